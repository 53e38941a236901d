//! How the tool prints what it found: lines for people, or one JSON object per line.

use std::time::{Duration, UNIX_EPOCH};

use redlock_runtime::{Holder, Inspection, LockKind};

/// One line per holder of `inspection`.
pub(crate) fn lines(inspection: &Inspection, json: bool) {
    for holder in &inspection.holders {
        if json {
            out!("{}", object(inspection, holder));
        } else {
            out!(
                "{}  {}  token {}  lease {}  ({})",
                inspection.key,
                holder.name,
                token(holder),
                lease(holder.lease_remaining),
                kind(holder.kind)
            );
        }
    }
}

/// Everything known about one key.
pub(crate) fn key(inspection: &Inspection, json: bool) {
    if json {
        if inspection.holders.is_empty() {
            let nobody = serde_json::json!({
                "key": inspection.key,
                "held": false,
                "holder": null,
                "fencing_token": null,
                "lease_remaining_ms": null,
                "waiting": inspection.waiting,
            });
            out!("{nobody}");
        }
        lines(inspection, true);
        return;
    }
    let Some(what) = inspection.kind else {
        out!(
            "{}: not held; {} waiting",
            inspection.key,
            inspection.waiting
        );
        return;
    };
    out!(
        "{}: {}, {} holder{}, {} waiting",
        inspection.key,
        family(what),
        inspection.holders.len(),
        if inspection.holders.len() == 1 {
            ""
        } else {
            "s"
        },
        inspection.waiting
    );
    for holder in &inspection.holders {
        let since = holder.since.map_or_else(
            || "unknown".to_owned(),
            |since| humantime::format_rfc3339_millis(since).to_string(),
        );
        out!("  holder          {}", holder.name);
        out!("  kind            {}", kind(holder.kind));
        out!("  fencing token   {}", token(holder));
        out!("  held since      {since}");
        out!("  lease left      {}", lease(holder.lease_remaining));
        out!("  token in Redis  {}", holder.token);
    }
    for (i, master) in inspection.masters.iter().enumerate() {
        match master {
            Some(view) => out!(
                "  master {i}: {} holder{}",
                view.holders.len(),
                if view.holders.len() == 1 { "" } else { "s" }
            ),
            None => out!("  master {i}: no answer"),
        }
    }
}

fn object(inspection: &Inspection, holder: &Holder) -> serde_json::Value {
    serde_json::json!({
        "key": inspection.key,
        "held": true,
        "kind": kind(holder.kind),
        "holder": holder.name,
        "fencing_token": holder.fencing_token,
        "lease_remaining_ms": holder.lease_remaining.as_millis() as u64,
        "since_ms": holder
            .since
            .and_then(|since| since.duration_since(UNIX_EPOCH).ok())
            .map(|since| since.as_millis() as u64),
        "token": holder.token,
        "waiting": inspection.waiting,
    })
}

fn token(holder: &Holder) -> String {
    holder
        .fencing_token
        .map_or_else(|| "-".to_owned(), |fence| fence.to_string())
}

fn lease(left: Duration) -> String {
    humantime::format_duration(Duration::from_millis(left.as_millis() as u64)).to_string()
}

fn kind(kind: LockKind) -> String {
    match kind {
        LockKind::Exclusive => "exclusive".to_owned(),
        LockKind::Read => "read".to_owned(),
        LockKind::Write => "write".to_owned(),
        LockKind::Permits(n) => format!("permit of {n}"),
        other => other.to_string(),
    }
}

fn family(kind: LockKind) -> String {
    match kind {
        LockKind::Exclusive => "exclusive lock".to_owned(),
        LockKind::Read | LockKind::Write => "read-write lock".to_owned(),
        other => other.to_string(),
    }
}
