//! The one point where the model's tool calls meet the guard rails: which tools are offered,
//! and for each call the decision ([`crate::policy`]), the answer to an `ask`
//! ([`crate::approval`]), the call itself and its audit row ([`crate::audit`]).

use std::time::Instant;

use zocalo_core::config::Decision;
use zocalo_core::{ConversationId, ToolCall, ToolContext, ToolError, ToolSpec};
use zocalo_store::Store;

use crate::approval::{self, Approval, ApprovalRequest, Approvals, DecidedBy};
use crate::audit::{self, Outcome};
use crate::policy::Policy;
use crate::{AgentError, ToolRegistry};

/// The guard rails of one ask. Without a policy every registered tool is offered and allowed
/// (the behaviour before permissions existed); calls are audited all the same.
pub(crate) struct Gate<'a> {
    pub store: &'a Store,
    pub tools: &'a ToolRegistry,
    pub policy: Option<&'a Policy>,
    pub approvals: &'a Approvals,
    pub conversation: &'a ConversationId,
}

/// What the guard rails make of one call.
enum Verdict {
    Run(DecidedBy),
    Refuse(DecidedBy, String),
}

/// A handled call: what goes back to the model.
pub(crate) struct Handled {
    pub content: String,
    pub is_error: bool,
}

impl Gate<'_> {
    fn offers(&self, tool: &str) -> bool {
        self.policy.is_none_or(|p| p.offers(tool))
    }

    /// The specs shown to the model: the registered tools the policy offers.
    pub(crate) fn specs(&self) -> Vec<ToolSpec> {
        self.tools
            .specs()
            .into_iter()
            .filter(|s| self.offers(&s.name))
            .collect()
    }

    async fn decide(&self, call: &ToolCall) -> Result<Verdict, AgentError> {
        let name = call.name.as_str();
        // A tool the model was not shown is refused as if it did not exist: that is all the
        // model may know of it.
        if !self.tools.contains(name) || !self.offers(name) {
            let available: Vec<&str> = self.tools.names().filter(|n| self.offers(n)).collect();
            return Ok(Verdict::Refuse(
                DecidedBy::Policy,
                format!(
                    "there is no tool named {name:?}; available: {}",
                    available.join(", ")
                ),
            ));
        }
        match self.policy.map_or(Decision::Allow, |p| p.decide(name)) {
            Decision::Allow => Ok(Verdict::Run(DecidedBy::Policy)),
            // Not offered, so refused above; kept for a policy that changes its mind.
            Decision::Deny => Ok(Verdict::Refuse(
                DecidedBy::Policy,
                format!("tool {name} was denied: the permissions in config.toml forbid it"),
            )),
            Decision::Ask => self.resolve_ask(call).await,
        }
    }

    /// Who can answer an `ask`, in order: an earlier "always", `--allow`, `--yes`, the
    /// approver; with none of them, nobody: denied.
    async fn resolve_ask(&self, call: &ToolCall) -> Result<Verdict, AgentError> {
        let name = call.name.as_str();
        if approval::has_grant(self.store, self.conversation, name).await? {
            return Ok(Verdict::Run(DecidedBy::Always));
        }
        if self.approvals.allow.matches(name) {
            return Ok(Verdict::Run(DecidedBy::AllowFlag));
        }
        if self.approvals.yes {
            return Ok(Verdict::Run(DecidedBy::YesFlag));
        }
        let Some(approver) = &self.approvals.approver else {
            return Ok(Verdict::Refuse(
                DecidedBy::Unattended,
                format!(
                    "tool {name} was denied: it needs approval and nobody can give it here \
                     (run with --allow {name} or --yes, or approve it when asked)"
                ),
            ));
        };
        let request = ApprovalRequest {
            conversation_id: self.conversation.clone(),
            call_id: call.id.clone(),
            tool: name.to_owned(),
            arguments: call.arguments.clone(),
        };
        Ok(match approver.approve(&request).await {
            Approval::Allow => Verdict::Run(DecidedBy::User),
            Approval::AlwaysInConversation => {
                approval::grant(self.store, self.conversation, name).await?;
                Verdict::Run(DecidedBy::User)
            }
            Approval::Deny => Verdict::Refuse(
                DecidedBy::User,
                format!("tool {name} was denied: the user did not approve this call"),
            ),
        })
    }

    /// Decides, runs (or not), audits. A refusal and a recoverable tool error come back as an
    /// error result for the model; a fatal tool error fails the ask (after its audit row).
    pub(crate) async fn call(&self, call: &ToolCall) -> Result<Handled, AgentError> {
        let verdict = self.decide(call).await?;
        let started = Instant::now();
        let (decided_by, ran) = match verdict {
            Verdict::Refuse(by, message) => (by, Err(message)),
            Verdict::Run(by) => {
                let ctx = ToolContext {
                    conversation: Some(self.conversation.clone()),
                };
                // Tools that spawn sub-agents record this conversation as their parent.
                let result = crate::spawn::in_conversation(
                    self.conversation.clone(),
                    self.tools
                        .call_with(&ctx, &call.name, call.arguments.clone()),
                )
                .await;
                (by, Ok(result))
            }
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (decision, outcome, content, is_error, fatal) = match ran {
            Err(refusal) => (Decision::Deny, Outcome::Denied, refusal, true, false),
            Ok(Ok(out)) => (
                Decision::Allow,
                Outcome::Ok,
                crate::ask::truncate_output(out),
                false,
                false,
            ),
            Ok(Err(ToolError::Recoverable(m))) => (Decision::Allow, Outcome::Error, m, true, false),
            Ok(Err(ToolError::Fatal(m))) => (Decision::Allow, Outcome::Error, m, true, true),
        };
        audit::record(
            self.store,
            &audit::Entry {
                conversation: self.conversation,
                call_id: &call.id,
                tool: &call.name,
                arguments: &call.arguments,
                decision,
                decided_by,
                outcome,
                duration_ms: if decision == Decision::Deny {
                    0
                } else {
                    duration_ms
                },
                result: &content,
            },
        )
        .await?;
        if fatal {
            return Err(AgentError::ToolFatal {
                tool: call.name.clone(),
                message: content,
            });
        }
        Ok(Handled { content, is_error })
    }
}
