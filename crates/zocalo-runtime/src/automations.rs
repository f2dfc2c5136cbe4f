//! Automations as every front end creates them (`schedule add`, the MCP `schedule_add` tool,
//! the model's `schedule_create`): checked in full before the database is touched, then
//! stored; and whether any worker will run the jobs they fire.

use chrono::Utc;
use zocalo_pool::{JobQueue, SqlQueue};
use zocalo_scheduler::automations::{check_catchup, check_name};
use zocalo_scheduler::{Action, Automation, NewAutomation, Schedule, Scheduler};
use zocalo_store::Store;

use crate::Runtime;

/// What an automation does, as the front ends say it: exactly one of `ask`, `skill` (with
/// `skill_args`) or `shell`; an ask may continue `conversation`, run as `persona` and have
/// its answer delivered to `deliver`.
#[derive(Clone, Debug, Default)]
pub struct ActionSpec {
    pub ask: Option<String>,
    pub conversation: Option<String>,
    pub skill: Option<String>,
    pub skill_args: Vec<String>,
    pub shell: Option<String>,
    pub persona: Option<String>,
    pub deliver: Option<String>,
}

/// The [`Action`] of a spec, checked: an unknown persona or a malformed delivery target is
/// refused now, not when the automation first fires.
pub fn action(ctx: &Runtime, spec: ActionSpec) -> anyhow::Result<Action> {
    let ActionSpec {
        ask,
        conversation,
        skill,
        skill_args,
        shell,
        persona,
        deliver,
    } = spec;
    if ask.is_none() && (persona.is_some() || deliver.is_some()) {
        return Err(crate::usage(
            "a persona and a delivery target go with an ask (--ask): skills and shell commands have no answer to deliver",
        ));
    }
    if let Some(p) = &persona {
        ctx.check_persona(p)?;
    }
    if let Some(t) = &deliver {
        t.parse::<zocalo_channels::Target>()?;
    }
    Ok(match (ask, skill, shell) {
        (Some(message), None, None) => Action::Ask {
            message,
            conversation_id: conversation,
            persona,
            deliver,
        },
        (None, Some(name), None) => Action::Skill {
            name,
            args: skill_args,
        },
        (None, None, Some(command)) => Action::Shell { command },
        _ => return Err(crate::usage("give exactly one of ask, skill or shell")),
    })
}

/// Checks `new` (name, rule, zone, action, catch-up) without touching any database.
pub fn check(new: &NewAutomation) -> anyhow::Result<()> {
    check_catchup(new.catchup_limit)?;
    check_name(&new.name)?;
    new.action.validate()?;
    Schedule::parse(&new.rrule, &new.start, &new.tz)?;
    Ok(())
}

/// Stores an automation (`Scheduler::add` makes the same checks as [`check`] first);
/// returns it with its next run.
pub async fn create(store: &Store, new: NewAutomation) -> anyhow::Result<Automation> {
    Ok(Scheduler::new(store.clone()).add(new, Utc::now()).await?)
}

/// A warning when no live worker node has said it runs `kind` jobs: the automation's runs
/// would stay queued. `None` when one has (the daemon's local worker counts).
pub async fn worker_warning(store: &Store, kind: &str) -> Option<String> {
    let nodes = match SqlQueue::new(store.clone()).nodes(200).await {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!("cannot list the pool's nodes: {e}");
            return None;
        }
    };
    let live = nodes
        .iter()
        .any(|n| n.state == "active" && n.kinds.iter().any(|k| k == kind));
    (!live).then(|| {
        format!(
            "no worker that runs `{kind}` jobs is running, so this automation's runs will wait \
             in the queue: start the daemon (`zocalo daemon start`, its local worker is on by \
             default) or a worker (`zocalo worker`)"
        )
    })
}
