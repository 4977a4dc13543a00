//! `keymash check-config --memory`: every shared-memory segment the configuration makes, with the
//! bytes its writer reserves, the total per PC, and whether `/dev/shm` on this machine holds it.
//! The README's memory figure is this table's total at the default configuration.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt as _;

use keymash_core::config::Config;
use keymash_pipeline::{MemoryPlan, PipelineError, Role, Segments};
use keymash_shm::{Prefix, SegmentId, SegmentName, ShmSpace};

const MIB: f64 = (1u64 << 20) as f64;

/// The table for `config`, or the refusal a service would give for it (a delay over its
/// memory limit, a ring too large).
pub(crate) fn report(config: &Config) -> Result<String, PipelineError> {
    let plan = Segments::new(config)?.memory_plan()?;
    let prefix = Prefix::new(&config.shm.prefix)?;
    Ok(render(&plan, &prefix, ShmSpace::now().ok()))
}

/// Bytes the filesystem already gives to this prefix's segments on `role`'s PC: a writer
/// re-attaches to (or replaces) them, so their pages count as room for the plan.
fn held_bytes(plan: &MemoryPlan, prefix: &Prefix, role: Role) -> u64 {
    plan.on(role)
        .filter_map(|s| {
            let id = SegmentId::new(prefix.clone(), SegmentName::new(&s.name).ok()?);
            let meta = std::fs::metadata(id.path()).ok()?;
            Some(meta.blocks().saturating_mul(512))
        })
        .sum()
}

fn render(plan: &MemoryPlan, prefix: &Prefix, space: Option<ShmSpace>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "shared memory at this configuration (/dev/shm/{prefix}.*), every page reserved when a segment is created:"
    );
    let _ = writeln!(
        out,
        "{:<24} {:<9} {:<24} {:>13} {:>10}",
        "SEGMENT", "PC", "CREATED BY", "BYTES", "MiB"
    );
    for role in [Role::Sender, Role::Receiver] {
        for s in plan.on(role) {
            let _ = writeln!(
                out,
                "{:<24} {:<9} {:<24} {:>13} {:>10.2}",
                s.name,
                role.to_string(),
                s.writer.binary(),
                s.bytes,
                s.bytes as f64 / MIB
            );
        }
    }
    for role in [Role::Sender, Role::Receiver] {
        let total = plan.total_bytes(role);
        let _ = write!(
            out,
            "total on the {role} PC: {total} bytes ({:.1} MiB)",
            total as f64 / MIB
        );
        if let Some(space) = &space {
            let _ = write!(
                out,
                ", {} bytes in whole pages",
                plan.occupied_bytes(role, space)
            );
        }
        let _ = writeln!(out);
    }
    let Some(space) = space else {
        let _ = writeln!(out, "/dev/shm: cannot read its size (statvfs failed)");
        return out;
    };
    if space.is_unlimited() {
        let _ = writeln!(
            out,
            "/dev/shm: a tmpfs without a size limit (bounded only by memory): nothing to check"
        );
        return out;
    }
    let _ = writeln!(
        out,
        "/dev/shm: {} bytes ({:.1} MiB), {} bytes used, {} bytes ({:.1} MiB) free",
        space.total_bytes,
        space.total_bytes as f64 / MIB,
        space.used_bytes,
        space.available_bytes,
        space.available_bytes as f64 / MIB
    );
    let mut both = (0, 0);
    for role in [Role::Sender, Role::Receiver] {
        let needed = plan.occupied_bytes(role, &space);
        let held = held_bytes(plan, prefix, role);
        both = (both.0 + needed, both.1 + held);
        let _ = writeln!(
            out,
            "{}",
            fit_line(&format!("the {role} PC"), needed, held, &space)
        );
    }
    let _ = writeln!(
        out,
        "{}",
        fit_line(
            "both PCs on this machine (demo, tests)",
            both.0,
            both.1,
            &space
        )
    );
    out
}

fn fit_line(what: &str, needed: u64, held: u64, space: &ShmSpace) -> String {
    let room = space.available_bytes.saturating_add(held);
    let held_note = if held > 0 {
        format!(" + {held} bytes its segments already hold")
    } else {
        String::new()
    };
    if needed <= room {
        format!(
            "{what}: fits ({needed} bytes needed, {} free{held_note})",
            space.available_bytes
        )
    } else {
        format!(
            "{what}: does NOT fit ({needed} bytes needed, {} free{held_note}): free /dev/shm, lower \
             `delay.seconds` or enlarge the tmpfs",
            space.available_bytes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(available: u64) -> ShmSpace {
        ShmSpace {
            block_size: 4096,
            total_bytes: 1 << 30,
            used_bytes: (1 << 30) - available,
            available_bytes: available,
        }
    }

    #[test]
    fn the_table_lists_every_segment_and_the_totals_per_pc() {
        let config = Config::default();
        let plan = Segments::new(&config)
            .expect("segments")
            .memory_plan()
            .expect("plan");
        let prefix = Prefix::new("kmtnothere").expect("prefix");
        let text = render(&plan, &prefix, Some(space(100 << 20)));
        for s in &plan.segments {
            assert!(
                text.contains(&format!("{} ", s.name)) && text.contains(&s.bytes.to_string()),
                "{} missing:\n{text}",
                s.name
            );
        }
        let sender = plan.total_bytes(Role::Sender);
        assert!(
            text.contains(&format!("total on the sender PC: {sender} bytes")),
            "{text}"
        );
        assert!(text.contains("the receiver PC: fits"), "{text}");
        assert!(text.contains("the sender PC: does NOT fit"), "{text}");
        assert!(text.contains("delay.seconds"), "{text}");
    }
}
