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

/// Everything `schedule add` takes (the CLI's flags, the Python package's arguments).
#[derive(Clone, Debug, Default)]
pub struct AddSpec {
    pub name: String,
    pub rrule: String,
    /// The first occurrence, local wall time.
    pub start: String,
    pub tz: String,
    pub action: ActionSpec,
    /// `skip`, `run-once` or `run-all` (default: the scheduler's).
    pub misfire: Option<String>,
    /// With `run-all`: at most this many missed occurrences (default: the scheduler's).
    pub catch_up: Option<u32>,
}

/// `schedule add`: everything is checked before the database is opened (or created), then
/// the automation is stored; returned with a warning when no worker runs the jobs it fires.
pub async fn add(ctx: &Runtime, spec: AddSpec) -> anyhow::Result<(Automation, Option<String>)> {
    let action = action(ctx, spec.action)?;
    let mut new = NewAutomation::new(&spec.name, &spec.rrule, &spec.start, &spec.tz, action);
    if let Some(m) = spec.misfire {
        new.misfire = m.parse()?;
    }
    if let Some(n) = spec.catch_up {
        new.catchup_limit = n;
    }
    check(&new)?;
    let kind = new.action.kind();
    let store = ctx.store().await?;
    let added = create(&store, new).await?;
    let warning = worker_warning(&store, kind).await;
    Ok((added, warning))
}

/// `schedule tick`: fires what is due at `now` (an RFC 3339 instant; default: the clock).
pub async fn tick(
    ctx: &Runtime,
    now: Option<&str>,
) -> anyhow::Result<zocalo_scheduler::TickReport> {
    let now = match now {
        None => Utc::now(),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|e| crate::usage(format!("--now {s:?} is not an RFC 3339 instant: {e}")))?
            .with_timezone(&Utc),
    };
    Ok(Scheduler::new(ctx.store().await?).tick(now).await?)
}

/// `schedule tick --loop`: the daemon's scheduler loop on its own (waking at each due
/// instant, at least every `interval`) until SIGTERM or Ctrl-C.
pub async fn tick_loop(ctx: &Runtime, interval: std::time::Duration) -> anyhow::Result<()> {
    if interval.is_zero() {
        return Err(crate::usage("--interval-ms must be at least 1"));
    }
    let store = ctx.store().await?;
    let r =
        zocalo_scheduler::run_ticker(store.clone(), interval, crate::signals::terminated()).await;
    store.close().await;
    Ok(r?)
}
