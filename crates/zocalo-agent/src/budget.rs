//! Token budgets (`[budgets]`), checked before every model call of an ask.
//!
//! Three limits can apply to one ask:
//!
//! - its own tokens: a [`TokenLimit`] the caller passes (`ask_tokens` for a person's ask,
//!   `automation_run_tokens` for an automation's run, `agent_tokens` for a sub-agent);
//! - the conversation's: tokens its stored messages used plus this ask's
//!   (`conversation_tokens`);
//! - the day's: tokens every conversation's messages used since 00:00 UTC plus this ask's
//!   (`daily_tokens`).
//!
//! Tokens are input + output as the providers report them. A budget is spent once the tokens
//! used reach it; the check runs before each model call, and a call's cost is only known when
//! it ends, so an ask can pass its limit by at most one call. Asks running at the same time do
//! not see each other's tokens until they are committed, and the calls that summarise old
//! turns count towards the ask but are not stored, so not towards later totals.

use chrono::{DateTime, Utc};
use serde::Serialize;
use zocalo_core::config::BudgetsConfig;
use zocalo_core::ConversationId;
use zocalo_store::{Store, StoreError};

/// A limit on one ask's own tokens, and the config key it came from (named in messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenLimit {
    pub tokens: u64,
    pub key: &'static str,
}

impl TokenLimit {
    /// `[budgets] ask_tokens`: an ask of a person (CLI, chat, API, channels).
    pub fn ask(budgets: &BudgetsConfig) -> Option<Self> {
        Self::of(budgets.ask_tokens, "ask_tokens")
    }

    /// `[budgets] automation_run_tokens`: one run of an automation.
    pub fn automation_run(budgets: &BudgetsConfig) -> Option<Self> {
        Self::of(budgets.automation_run_tokens, "automation_run_tokens")
    }

    /// `[budgets] agent_tokens`: one sub-agent.
    pub fn agent(budgets: &BudgetsConfig) -> Option<Self> {
        Self::of(budgets.agent_tokens, "agent_tokens")
    }

    fn of(tokens: Option<u64>, key: &'static str) -> Option<Self> {
        tokens.map(|tokens| Self { tokens, key })
    }
}

/// Which budget ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetScope {
    Ask,
    Conversation,
    Daily,
}

/// A budget that is spent: `used` tokens against `limit` (`[budgets] key`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct BudgetExceeded {
    pub scope: BudgetScope,
    pub key: &'static str,
    pub used: u64,
    pub limit: u64,
}

impl std::fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            key, used, limit, ..
        } = self;
        match self.scope {
            BudgetScope::Ask => write!(
                f,
                "this ask used {used} tokens, its budget is {limit} ([budgets] {key} in \
                 config.toml)"
            ),
            BudgetScope::Conversation => write!(
                f,
                "this conversation has used {used} tokens, its budget is {limit} ([budgets] \
                 {key} in config.toml): start a new conversation or raise the limit"
            ),
            BudgetScope::Daily => write!(
                f,
                "{used} tokens were used today (UTC), the daily budget is {limit} ([budgets] \
                 {key} in config.toml): wait until 00:00 UTC or raise the limit"
            ),
        }
    }
}

/// The limits of one ask and what was spent before it started.
#[derive(Clone, Debug, Default)]
pub(crate) struct BudgetCheck {
    ask: Option<TokenLimit>,
    /// (limit, tokens the conversation's stored messages used)
    conversation: Option<(u64, u64)>,
    /// (limit, tokens used today before this ask)
    daily: Option<(u64, u64)>,
}

impl BudgetCheck {
    /// Reads the stored totals the configured limits need (none when nothing is limited).
    pub(crate) async fn load(
        store: &Store,
        budgets: &BudgetsConfig,
        ask: Option<TokenLimit>,
        conversation: Option<&ConversationId>,
    ) -> Result<Self, StoreError> {
        let conversation = match budgets.conversation_tokens {
            Some(limit) => {
                let used = match conversation {
                    Some(id) => total(store.conversation_usage(id).await?),
                    None => 0,
                };
                Some((limit, used))
            }
            None => None,
        };
        let daily = match budgets.daily_tokens {
            Some(limit) => Some((
                limit,
                total(store.usage_since(start_of_day(Utc::now())).await?),
            )),
            None => None,
        };
        Ok(Self {
            ask,
            conversation,
            daily,
        })
    }

    /// The first budget that `used` (this ask's tokens so far) has spent, if any.
    pub(crate) fn exceeded(&self, used: u64) -> Option<BudgetExceeded> {
        let spent = |scope, key, limit: u64, before: u64| {
            let used = before.saturating_add(used);
            (used >= limit).then_some(BudgetExceeded {
                scope,
                key,
                used,
                limit,
            })
        };
        self.ask
            .and_then(|l| spent(BudgetScope::Ask, l.key, l.tokens, 0))
            .or_else(|| {
                self.conversation.and_then(|(limit, before)| {
                    spent(
                        BudgetScope::Conversation,
                        "conversation_tokens",
                        limit,
                        before,
                    )
                })
            })
            .or_else(|| {
                self.daily.and_then(|(limit, before)| {
                    spent(BudgetScope::Daily, "daily_tokens", limit, before)
                })
            })
    }
}

fn total(u: zocalo_core::Usage) -> u64 {
    u.input_tokens.saturating_add(u.output_tokens)
}

/// 00:00 UTC of `now`'s day.
pub(crate) fn start_of_day(now: DateTime<Utc>) -> DateTime<Utc> {
    now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn limits_name_their_key() {
        let b = BudgetsConfig {
            ask_tokens: Some(10),
            automation_run_tokens: Some(20),
            agent_tokens: None,
            ..BudgetsConfig::default()
        };
        assert_eq!(TokenLimit::ask(&b).unwrap().key, "ask_tokens");
        assert_eq!(TokenLimit::automation_run(&b).unwrap().tokens, 20);
        assert_eq!(TokenLimit::agent(&b), None);
    }

    #[test]
    fn spent_means_reached_and_the_first_scope_reports() {
        let check = BudgetCheck {
            ask: Some(TokenLimit {
                tokens: 100,
                key: "agent_tokens",
            }),
            conversation: Some((1000, 950)),
            daily: Some((5000, 4990)),
        };
        assert_eq!(check.exceeded(0), None);
        assert_eq!(check.exceeded(9), None);
        let e = check.exceeded(10).unwrap();
        assert_eq!((e.scope, e.used, e.limit), (BudgetScope::Daily, 5000, 5000));
        let e = check.exceeded(50).unwrap();
        assert_eq!(e.scope, BudgetScope::Conversation);
        assert!(e.to_string().contains("new conversation"), "{e}");
        let e = check.exceeded(100).unwrap();
        assert_eq!(e.scope, BudgetScope::Ask);
        assert!(e.to_string().contains("agent_tokens"), "{e}");
        assert_eq!(BudgetCheck::default().exceeded(u64::MAX), None);
    }

    #[test]
    fn days_start_at_utc_midnight() {
        let t = Utc.with_ymd_and_hms(2026, 3, 8, 23, 59, 59).unwrap();
        assert_eq!(
            start_of_day(t),
            Utc.with_ymd_and_hms(2026, 3, 8, 0, 0, 0).unwrap()
        );
    }
}
