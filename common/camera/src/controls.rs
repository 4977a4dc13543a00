//! `[capture.controls]` on a real device: read what it offers (VIDIOC_QUERY_EXT_CTRL and
//! QUERYMENU through the `v4l` crate), plan with `keymash_media::controls` (which control, which
//! value, in which order), set each with VIDIOC_S_EXT_CTRLS, read every value back and log what
//! the driver clamped or ignored. Done at every open, so a replugged camera, which has forgotten
//! its settings, gets them again.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use keymash_media::controls::{
    plan_controls, ControlKind, ControlSetting, MenuEntry, OfferedControl,
};
use v4l::control::{Control, Description, Flags, MenuItem, Type, Value};
use v4l::Device;

/// What the device offers, in the pure planning's terms. A device without controls answers
/// the first query with EINVAL, which the `v4l` crate passes on: that is an empty list.
pub(crate) fn offered_controls(device: &Device) -> std::io::Result<Vec<OfferedControl>> {
    match device.query_controls() {
        Ok(descriptions) => Ok(descriptions.into_iter().map(offered_control).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn offered_control(description: Description) -> OfferedControl {
    let kind = match description.typ {
        Type::Integer => ControlKind::Integer,
        Type::Integer64 => ControlKind::Integer64,
        Type::Boolean => ControlKind::Boolean,
        Type::Menu => ControlKind::Menu,
        Type::IntegerMenu => ControlKind::IntegerMenu,
        Type::Button => ControlKind::Button,
        Type::String => ControlKind::Text,
        Type::Bitmask => ControlKind::Bitmask,
        Type::CtrlClass => ControlKind::Class,
        Type::U8 | Type::U16 | Type::U32 | Type::Area => ControlKind::Other,
    };
    let menu = description
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|(index, item)| MenuEntry {
            index,
            label: match item {
                MenuItem::Name(name) => name,
                MenuItem::Value(value) => value.to_string(),
            },
        })
        .collect();
    OfferedControl {
        id: description.id,
        name: description.name,
        kind,
        minimum: description.minimum,
        maximum: description.maximum,
        step: description.step,
        default: description.default,
        menu,
        read_only: description.flags.contains(Flags::READ_ONLY)
            || description.flags.contains(Flags::DISABLED),
        inactive: description.flags.contains(Flags::INACTIVE),
    }
}

/// The value of control `id` now (G_EXT_CTRLS), for integer, boolean and menu controls.
pub(crate) fn current_value(device: &Device, id: u32) -> Option<i64> {
    match device.control(id).ok()?.value {
        Value::Integer(v) => Some(v),
        Value::Boolean(b) => Some(i64::from(b)),
        _ => None,
    }
}

/// Sets `configured` on the open device at `path` (see the module comment). An unknown control
/// or a value the camera cannot take is an error naming it and listing what the camera offers;
/// a value the driver changed is logged, with what was asked and what the camera took.
pub(crate) fn apply_controls(
    device: &Device,
    path: &Path,
    configured: &BTreeMap<String, ControlSetting>,
) -> anyhow::Result<()> {
    if configured.is_empty() {
        return Ok(());
    }
    let offered = offered_controls(device)
        .with_context(|| format!("cannot list the controls of {}", path.display()))?;
    let planned = plan_controls(&offered, configured)?;
    for control in &planned {
        // One call per control, in the planned order: a mode must take effect before the value
        // it unlocks is set.
        device
            .set_control(Control {
                id: control.id,
                value: match control.control.kind {
                    ControlKind::Boolean => Value::Boolean(control.value != 0),
                    _ => Value::Integer(control.value),
                },
            })
            .with_context(|| {
                format!(
                    "camera {} refused capture.controls.{} ({})",
                    path.display(),
                    control.asked(),
                    control.control.describe()
                )
            })?;
    }
    // Read back after all are set: a later switch may have changed an earlier value, and
    // whether a value is in effect (INACTIVE) is known only now.
    let after = offered_controls(device).unwrap_or_default();
    let mut taken = Vec::with_capacity(planned.len());
    for control in &planned {
        let got = current_value(device, control.id);
        let inactive = after
            .iter()
            .find(|c| c.id == control.id)
            .is_some_and(|c| c.inactive);
        if let Some(note) = control.read_back(got, inactive) {
            log::warn!("camera {}: {note}", path.display());
        }
        taken.push(match got {
            Some(value) => format!("{} = {}", control.key, control.control.value_text(value)),
            None => format!("{} = ?", control.key),
        });
    }
    log::info!(
        "camera {}: controls set, read back: {}",
        path.display(),
        taken.join(", ")
    );
    Ok(())
}
