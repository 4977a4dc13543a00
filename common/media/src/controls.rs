//! V4L2 controls from `[capture.controls]` as pure code: what a camera offers (from
//! VIDIOC_QUERY_EXT_CTRL and QUERYMENU, as plain data), the configured values, and the decision
//! what to set in which order, or why not. keymash-camera asks the device, calls
//! [`plan_controls`], sets each [`PlannedControl`] in the order given, reads every value back
//! and logs what [`PlannedControl::read_back`] says about a value the driver clamped or ignored.
//!
//! Order: switches before values. A menu or boolean control chooses a mode (`auto_exposure`,
//! `white_balance_automatic`, `focus_automatic_continuous`) and the integer it unlocks
//! (`exposure_time_absolute`, `white_balance_temperature`, `focus_absolute`) is INACTIVE, and
//! ignored or refused by the driver, until the mode allows it. So every menu and boolean is set
//! first, then every integer; within each group in name order. Whatever order the TOML file
//! lists them in (the table is read into a sorted map), the result is the same.
//!
//! Refusals name the control (`capture.controls.NAME`) and say what the camera offers: every
//! control for an unknown name, the control's type, range or menu items for a value it cannot
//! take.

use std::collections::BTreeMap;
use std::fmt;

pub use keymash_core::config::{control_key, ControlSetting};

/// The kinds of V4L2 control (`enum v4l2_ctrl_type`) as far as keymash tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    Integer,
    Integer64,
    Boolean,
    /// Items named by strings; some indices in the range may be missing.
    Menu,
    /// Items that are numbers (shown as text in [`MenuEntry::label`]).
    IntegerMenu,
    Button,
    Text,
    Bitmask,
    /// A class header ("User Controls"): a heading in the list, not a control.
    Class,
    /// A compound or newer type keymash does not set.
    Other,
}

impl ControlKind {
    fn name(self) -> &'static str {
        match self {
            ControlKind::Integer | ControlKind::Integer64 => "integer",
            ControlKind::Boolean => "boolean",
            ControlKind::Menu => "menu",
            ControlKind::IntegerMenu => "integer menu",
            ControlKind::Button => "button",
            ControlKind::Text => "string",
            ControlKind::Bitmask => "bitmask",
            ControlKind::Class => "class",
            ControlKind::Other => "compound",
        }
    }

    /// Whether `[capture.controls]` can set a control of this kind.
    fn settable(self) -> bool {
        matches!(
            self,
            ControlKind::Integer
                | ControlKind::Integer64
                | ControlKind::Boolean
                | ControlKind::Menu
                | ControlKind::IntegerMenu
        )
    }

    /// Menus and booleans choose a mode; they are set before integers (module comment).
    fn is_switch(self) -> bool {
        matches!(
            self,
            ControlKind::Boolean | ControlKind::Menu | ControlKind::IntegerMenu
        )
    }
}

/// One item of a menu control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuEntry {
    pub index: u32,
    pub label: String,
}

/// One control as the camera describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedControl {
    pub id: u32,
    /// The kernel's name ("Exposure Time, Absolute").
    pub name: String,
    pub kind: ControlKind,
    pub minimum: i64,
    pub maximum: i64,
    pub step: u64,
    pub default: i64,
    /// The items that exist, for menus (QUERYMENU skips the others).
    pub menu: Vec<MenuEntry>,
    pub read_only: bool,
    /// Another control's setting makes this one ineffective for now (an automatic mode).
    pub inactive: bool,
}

impl OfferedControl {
    /// The name `[capture.controls]` takes ([`control_key`]).
    pub fn key(&self) -> String {
        control_key(&self.name)
    }

    /// Whether `[capture.controls]` can set it.
    pub fn settable(&self) -> bool {
        self.kind.settable() && !self.read_only
    }

    /// A value of this control as it would be written in the TOML file: `true`, `"Manual
    /// Mode"`, `250`.
    pub fn value_text(&self, value: i64) -> String {
        match self.kind {
            ControlKind::Boolean => (value != 0).to_string(),
            ControlKind::Menu => match self.menu_entry(value) {
                Some(entry) => format!("{:?}", entry.label),
                None => value.to_string(),
            },
            _ => value.to_string(),
        }
    }

    fn menu_entry(&self, index: i64) -> Option<&MenuEntry> {
        self.menu.iter().find(|e| i64::from(e.index) == index)
    }

    /// Type, range or items, and default: `integer -64..64, step 1, default 0`, `menu 1 "Manual
    /// Mode", 3 "Aperture Priority Mode", default "Aperture Priority Mode"`.
    pub fn describe(&self) -> String {
        let mut text = match self.kind {
            ControlKind::Integer | ControlKind::Integer64 => {
                let step = if self.step > 1 {
                    format!(", step {}", self.step)
                } else {
                    String::new()
                };
                format!(
                    "integer {}..{}{step}, default {}",
                    self.minimum, self.maximum, self.default
                )
            }
            ControlKind::Boolean => format!("boolean, default {}", self.value_text(self.default)),
            ControlKind::Menu | ControlKind::IntegerMenu => {
                let items: Vec<String> = self
                    .menu
                    .iter()
                    .map(|e| match self.kind {
                        ControlKind::Menu => format!("{} {:?}", e.index, e.label),
                        _ => format!("{}: {}", e.index, e.label),
                    })
                    .collect();
                format!(
                    "{} {}, default {}",
                    self.kind.name(),
                    items.join(", "),
                    self.value_text(self.default)
                )
            }
            kind => format!("{} (not settable from the configuration)", kind.name()),
        };
        if self.read_only {
            text.push_str(", read-only");
        }
        if self.inactive {
            text.push_str(", inactive now");
        }
        text
    }
}

/// Every control a camera offers, one `name (description)` each, for error messages.
pub fn describe_controls(offered: &[OfferedControl]) -> String {
    let listed: Vec<String> = offered
        .iter()
        .filter(|c| c.kind != ControlKind::Class)
        .map(|c| format!("{} ({})", c.key(), c.describe()))
        .collect();
    if listed.is_empty() {
        "no controls".to_owned()
    } else {
        listed.join("; ")
    }
}

/// Why `[capture.controls]` does not fit the camera. Each names the control; see the module
/// comment for what each lists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("capture.controls.{key}: the camera has no such control{}; it offers: {offered}", suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
    Unknown {
        key: String,
        suggestion: Option<String>,
        offered: String,
    },
    #[error("capture.controls.{key}: cannot be set ({key} is {control})")]
    NotSettable { key: String, control: String },
    #[error(
        "capture.controls.{key} = {given}: {key} takes {takes}, not {what} ({key} is {control})"
    )]
    WrongType {
        key: String,
        given: String,
        what: &'static str,
        takes: &'static str,
        control: String,
    },
    #[error("capture.controls.{key} = {given} is out of range ({key} is {control})")]
    OutOfRange {
        key: String,
        given: String,
        control: String,
    },
    #[error("capture.controls.{key} = {given} is not one of its items ({key} is {control})")]
    NotAMenuItem {
        key: String,
        given: String,
        control: String,
    },
}

/// One control to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedControl {
    pub key: String,
    pub id: u32,
    /// The value for VIDIOC_S_EXT_CTRLS (a menu item's index, 0/1 for a boolean).
    pub value: i64,
    /// The control as offered, to describe values in messages.
    pub control: OfferedControl,
}

impl PlannedControl {
    /// `auto_exposure = "Manual Mode"`.
    pub fn asked(&self) -> String {
        format!("{} = {}", self.key, self.control.value_text(self.value))
    }

    /// What to log about the value read back after setting (`None`: could not be read), or
    /// `None` when the camera took the value as asked and the control is active.
    pub fn read_back(&self, got: Option<i64>, inactive_now: bool) -> Option<String> {
        let asked = self.control.value_text(self.value);
        let mut notes = Vec::new();
        match got {
            Some(got) if got != self.value => notes.push(format!(
                "asked {asked}, the camera took {} ({})",
                self.control.value_text(got),
                self.control.describe()
            )),
            Some(_) => {}
            None => notes.push(format!("asked {asked}, the value cannot be read back")),
        }
        if inactive_now {
            notes.push(
                "the camera marks it inactive (an automatic mode overrides it), so it may have \
                 no effect"
                    .to_owned(),
            );
        }
        (!notes.is_empty()).then(|| format!("capture.controls.{}: {}", self.key, notes.join("; ")))
    }
}

/// Matches the configured controls to what the camera offers and orders them (switches first,
/// module comment). The first control that does not fit, in name order, is the error.
pub fn plan_controls(
    offered: &[OfferedControl],
    configured: &BTreeMap<String, ControlSetting>,
) -> Result<Vec<PlannedControl>, ControlError> {
    let mut planned = Vec::with_capacity(configured.len());
    for (key, setting) in configured {
        let Some(control) = offered
            .iter()
            .find(|c| c.kind != ControlKind::Class && c.key() == *key)
        else {
            return Err(ControlError::Unknown {
                key: key.clone(),
                suggestion: nearest_name(key, offered),
                offered: describe_controls(offered),
            });
        };
        let value = value_for(key, control, setting)?;
        planned.push(PlannedControl {
            key: key.clone(),
            id: control.id,
            value,
            control: control.clone(),
        });
    }
    // Stable: name order within each group.
    planned.sort_by_key(|p| !p.control.kind.is_switch());
    Ok(planned)
}

/// The value to set for `setting`, or why the control cannot take it.
fn value_for(
    key: &str,
    control: &OfferedControl,
    setting: &ControlSetting,
) -> Result<i64, ControlError> {
    let given = setting.to_string();
    if !control.settable() {
        return Err(ControlError::NotSettable {
            key: key.to_owned(),
            control: control.describe(),
        });
    }
    let wrong_type = |takes: &'static str| ControlError::WrongType {
        key: key.to_owned(),
        given: given.clone(),
        what: match setting {
            ControlSetting::Integer(_) => "an integer",
            ControlSetting::Boolean(_) => "a boolean",
            ControlSetting::MenuItem(_) => "a string",
        },
        takes,
        control: control.describe(),
    };
    let out_of_range = || ControlError::OutOfRange {
        key: key.to_owned(),
        given: given.clone(),
        control: control.describe(),
    };
    let not_an_item = || ControlError::NotAMenuItem {
        key: key.to_owned(),
        given: given.clone(),
        control: control.describe(),
    };
    match (control.kind, setting) {
        (ControlKind::Boolean, ControlSetting::Boolean(b)) => Ok(i64::from(*b)),
        // v4l2-ctl writes booleans as 0 and 1; a value copied from it is taken.
        (ControlKind::Boolean, ControlSetting::Integer(v @ (0 | 1))) => Ok(*v),
        (ControlKind::Boolean, ControlSetting::Integer(_)) => Err(out_of_range()),
        (ControlKind::Boolean, ControlSetting::MenuItem(_)) => Err(wrong_type("true or false")),
        // Off the step grid is taken: the driver rounds, and the read-back says to what.
        (ControlKind::Integer | ControlKind::Integer64, ControlSetting::Integer(v)) => {
            if (control.minimum..=control.maximum).contains(v) {
                Ok(*v)
            } else {
                Err(out_of_range())
            }
        }
        (ControlKind::Integer | ControlKind::Integer64, _) => Err(wrong_type("an integer")),
        (ControlKind::Menu | ControlKind::IntegerMenu, ControlSetting::Integer(index)) => control
            .menu_entry(*index)
            .map(|e| i64::from(e.index))
            .ok_or_else(not_an_item),
        (ControlKind::Menu | ControlKind::IntegerMenu, ControlSetting::MenuItem(label)) => {
            // Exactly as the camera names it, else ignoring case and surrounding spaces.
            let wanted = label.trim();
            control
                .menu
                .iter()
                .find(|e| e.label == *label)
                .or_else(|| {
                    control
                        .menu
                        .iter()
                        .find(|e| e.label.trim().eq_ignore_ascii_case(wanted))
                })
                .map(|e| i64::from(e.index))
                .ok_or_else(not_an_item)
        }
        (ControlKind::Menu | ControlKind::IntegerMenu, ControlSetting::Boolean(_)) => Err(
            wrong_type("one of its items, by name in quotes or by number"),
        ),
        _ => Err(ControlError::NotSettable {
            key: key.to_owned(),
            control: control.describe(),
        }),
    }
}

/// The offered name nearest to a misspelt `key` (a few edits away, or `key` shortened), to
/// suggest.
fn nearest_name(key: &str, offered: &[OfferedControl]) -> Option<String> {
    let limit = (key.len() / 4).max(2);
    offered
        .iter()
        .filter(|c| c.kind != ControlKind::Class)
        .map(|c| {
            let name = c.key();
            (edit_distance(key, &name), name)
        })
        .filter(|(d, name)| *d <= limit || (key.len() >= 4 && name.starts_with(key)))
        .min()
        .map(|(_, name)| name)
}

/// Levenshtein distance over bytes (control names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

impl fmt::Display for PlannedControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.asked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integer(id: u32, name: &str, min: i64, max: i64, step: u64, default: i64) -> OfferedControl {
        OfferedControl {
            id,
            name: name.to_owned(),
            kind: ControlKind::Integer,
            minimum: min,
            maximum: max,
            step,
            default,
            menu: Vec::new(),
            read_only: false,
            inactive: false,
        }
    }

    fn boolean(id: u32, name: &str, default: bool) -> OfferedControl {
        OfferedControl {
            kind: ControlKind::Boolean,
            ..integer(id, name, 0, 1, 1, i64::from(default))
        }
    }

    fn menu(id: u32, name: &str, items: &[(u32, &str)], default: i64) -> OfferedControl {
        OfferedControl {
            kind: ControlKind::Menu,
            menu: items
                .iter()
                .map(|&(index, label)| MenuEntry {
                    index,
                    label: label.to_owned(),
                })
                .collect(),
            ..integer(id, name, 0, 3, 1, default)
        }
    }

    /// The controls of a typical UVC webcam, in the order the driver lists them (by ID).
    fn webcam() -> Vec<OfferedControl> {
        vec![
            OfferedControl {
                kind: ControlKind::Class,
                ..integer(0x0098_0001, "User Controls", 0, 0, 0, 0)
            },
            integer(0x0098_0900, "Brightness", -64, 64, 1, 0),
            boolean(0x0098_090c, "White Balance, Automatic", true),
            menu(
                0x0098_0918,
                "Power Line Frequency",
                &[(0, "Disabled"), (1, "50 Hz"), (2, "60 Hz")],
                1,
            ),
            OfferedControl {
                inactive: true,
                ..integer(
                    0x0098_091a,
                    "White Balance Temperature",
                    2800,
                    6500,
                    10,
                    4600,
                )
            },
            menu(
                0x009a_0901,
                "Auto Exposure",
                &[(1, "Manual Mode"), (3, "Aperture Priority Mode")],
                3,
            ),
            OfferedControl {
                inactive: true,
                ..integer(0x009a_0902, "Exposure Time, Absolute", 3, 2047, 1, 250)
            },
            OfferedControl {
                inactive: true,
                ..integer(0x009a_090a, "Focus (absolute)", 0, 250, 5, 0)
            },
            boolean(0x009a_090c, "Focus, Automatic Continuous", true),
        ]
    }

    fn configured(pairs: &[(&str, ControlSetting)]) -> BTreeMap<String, ControlSetting> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn int(v: i64) -> ControlSetting {
        ControlSetting::Integer(v)
    }

    fn item(label: &str) -> ControlSetting {
        ControlSetting::MenuItem(label.to_owned())
    }

    #[test]
    fn switches_are_set_before_the_values_they_unlock_in_any_order() {
        let wanted = configured(&[
            ("exposure_time_absolute", int(500)),
            ("focus_absolute", int(100)),
            ("brightness", int(10)),
            ("white_balance_temperature", int(4000)),
            ("focus_automatic_continuous", ControlSetting::Boolean(false)),
            ("auto_exposure", item("Manual Mode")),
            ("white_balance_automatic", ControlSetting::Boolean(false)),
        ]);
        let plan = plan_controls(&webcam(), &wanted).unwrap();
        let order: Vec<String> = plan.iter().map(PlannedControl::asked).collect();
        // focus_absolute sorts before focus_automatic_continuous by name, yet comes after it.
        assert_eq!(
            order,
            [
                "auto_exposure = \"Manual Mode\"",
                "focus_automatic_continuous = false",
                "white_balance_automatic = false",
                "brightness = 10",
                "exposure_time_absolute = 500",
                "focus_absolute = 100",
                "white_balance_temperature = 4000",
            ]
        );
        assert_eq!(plan[0].id, 0x009a_0901);
        assert_eq!(plan[0].value, 1);
    }

    #[test]
    fn values_are_taken_in_each_form_the_configuration_allows() {
        let cases = [
            ("brightness", int(-64), 0x0098_0900, -64),
            ("brightness", int(64), 0x0098_0900, 64),
            (
                "white_balance_automatic",
                ControlSetting::Boolean(true),
                0x0098_090c,
                1,
            ),
            ("white_balance_automatic", int(0), 0x0098_090c, 0),
            ("power_line_frequency", item("60 Hz"), 0x0098_0918, 2),
            ("power_line_frequency", item(" 50 hz "), 0x0098_0918, 1),
            ("power_line_frequency", int(0), 0x0098_0918, 0),
            ("auto_exposure", int(3), 0x009a_0901, 3),
            // Off the step: the driver rounds, the read-back says so.
            ("focus_absolute", int(7), 0x009a_090a, 7),
        ];
        for (key, setting, id, value) in cases {
            let plan = plan_controls(&webcam(), &configured(&[(key, setting.clone())]))
                .unwrap_or_else(|e| panic!("{key} = {setting}: {e}"));
            assert_eq!(
                (plan[0].id, plan[0].value),
                (id, value),
                "{key} = {setting}"
            );
        }
        assert!(plan_controls(&webcam(), &BTreeMap::new())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn an_unknown_name_is_refused_listing_every_control_with_a_suggestion() {
        let err = plan_controls(
            &webcam(),
            &configured(&[("exposure_time_absolut", int(500))]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "capture.controls.exposure_time_absolut: the camera has no such control (did you mean \
             exposure_time_absolute?); it offers: brightness (integer -64..64, default 0); \
             white_balance_automatic (boolean, default true); power_line_frequency (menu 0 \
             \"Disabled\", 1 \"50 Hz\", 2 \"60 Hz\", default \"50 Hz\"); white_balance_temperature \
             (integer 2800..6500, step 10, default 4600, inactive now); auto_exposure (menu 1 \
             \"Manual Mode\", 3 \"Aperture Priority Mode\", default \"Aperture Priority Mode\"); \
             exposure_time_absolute (integer 3..2047, default 250, inactive now); focus_absolute \
             (integer 0..250, step 5, default 0, inactive now); focus_automatic_continuous \
             (boolean, default true)"
        );
        // Nothing near: no suggestion. A class header is not a control.
        for key in ["zoom_absolute", "user_controls"] {
            let err = plan_controls(&webcam(), &configured(&[(key, int(1))])).unwrap_err();
            assert!(
                matches!(
                    &err,
                    ControlError::Unknown {
                        suggestion: None,
                        ..
                    }
                ),
                "{key}: {err}"
            );
        }
        let err = plan_controls(&[], &configured(&[("brightness", int(1))])).unwrap_err();
        assert!(err.to_string().ends_with("it offers: no controls"), "{err}");
    }

    #[test]
    fn a_value_the_control_cannot_take_is_refused_describing_the_control() {
        let cases = [
            (
                "brightness",
                int(65),
                "capture.controls.brightness = 65 is out of range (brightness is integer -64..64, \
                 default 0)",
            ),
            (
                "brightness",
                item("bright"),
                "capture.controls.brightness = \"bright\": brightness takes an integer, not a \
                 string (brightness is integer -64..64, default 0)",
            ),
            (
                "auto_exposure",
                item("Manual"),
                "capture.controls.auto_exposure = \"Manual\" is not one of its items \
                 (auto_exposure is menu 1 \"Manual Mode\", 3 \"Aperture Priority Mode\", default \
                 \"Aperture Priority Mode\")",
            ),
            (
                "auto_exposure",
                int(0),
                "capture.controls.auto_exposure = 0 is not one of its items (auto_exposure is \
                 menu 1 \"Manual Mode\", 3 \"Aperture Priority Mode\", default \"Aperture \
                 Priority Mode\")",
            ),
            (
                "auto_exposure",
                ControlSetting::Boolean(true),
                "capture.controls.auto_exposure = true: auto_exposure takes one of its items, by \
                 name in quotes or by number, not a boolean (auto_exposure is menu 1 \"Manual \
                 Mode\", 3 \"Aperture Priority Mode\", default \"Aperture Priority Mode\")",
            ),
            (
                "white_balance_automatic",
                int(2),
                "capture.controls.white_balance_automatic = 2 is out of range \
                 (white_balance_automatic is boolean, default true)",
            ),
            (
                "white_balance_automatic",
                item("yes"),
                "capture.controls.white_balance_automatic = \"yes\": white_balance_automatic takes \
                 true or false, not a string (white_balance_automatic is boolean, default true)",
            ),
        ];
        for (key, setting, text) in cases {
            let err = plan_controls(&webcam(), &configured(&[(key, setting.clone())]))
                .expect_err(&format!("{key} = {setting}"));
            assert_eq!(err.to_string(), text);
        }
        let read_only = vec![OfferedControl {
            read_only: true,
            ..integer(1, "Pan Speed", -1, 1, 1, 0)
        }];
        let err = plan_controls(&read_only, &configured(&[("pan_speed", int(0))])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "capture.controls.pan_speed: cannot be set (pan_speed is integer -1..1, default 0, \
             read-only)"
        );
    }

    #[test]
    fn the_read_back_reports_clamped_ignored_and_inactive_values() {
        let plan = plan_controls(
            &webcam(),
            &configured(&[
                ("focus_absolute", int(7)),
                ("auto_exposure", item("Manual Mode")),
            ]),
        )
        .unwrap();
        let (exposure, focus) = (&plan[0], &plan[1]);
        assert_eq!(exposure.read_back(Some(1), false), None);
        assert_eq!(
            exposure.read_back(Some(3), false).unwrap(),
            "capture.controls.auto_exposure: asked \"Manual Mode\", the camera took \"Aperture \
             Priority Mode\" (menu 1 \"Manual Mode\", 3 \"Aperture Priority Mode\", default \
             \"Aperture Priority Mode\")"
        );
        assert_eq!(
            focus.read_back(Some(5), false).unwrap(),
            "capture.controls.focus_absolute: asked 7, the camera took 5 (integer 0..250, step 5, \
             default 0, inactive now)"
        );
        assert_eq!(
            focus.read_back(Some(7), true).unwrap(),
            "capture.controls.focus_absolute: the camera marks it inactive (an automatic mode \
             overrides it), so it may have no effect"
        );
        assert_eq!(
            focus.read_back(None, false).unwrap(),
            "capture.controls.focus_absolute: asked 7, the value cannot be read back"
        );
    }

    #[test]
    fn names_near_a_misspelling_are_suggested() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        // A shortened name (the old `white_balance_temperature_auto` style) is a prefix.
        assert_eq!(
            nearest_name("white_balance_auto", &webcam()).as_deref(),
            Some("white_balance_automatic")
        );
        assert_eq!(nearest_name("zoom", &webcam()), None);
        assert_eq!(
            nearest_name("brightnes", &webcam()).as_deref(),
            Some("brightness")
        );
    }
}
