//! The commands a person can send on a channel instead of a message for the model.

/// A slash command (`/model@mybot gpt-4o` works too: Telegram adds the bot's name in groups).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Start a new conversation on this channel (the old one stays).
    New,
    /// Show (None) or choose the model; `default` goes back to the configured one.
    Model(Option<String>),
    /// Show (None) or choose the persona; `none` asks without one.
    Persona(Option<String>),
    /// The conversation, model and persona in use.
    Status,
    /// What can be said (`/help`, and Telegram's `/start`).
    Help,
    /// Something that starts with `/` but is not ours.
    Unknown(String),
}

/// What `/help` answers.
pub const HELP: &str = "Talk to me as you would in a chat; I remember this conversation.\n\
/new - start a new conversation\n\
/model NAME - answer with another model (/model default to go back)\n\
/persona NAME - answer as a persona from the config (/persona none to stop)\n\
/status - the conversation, model and persona in use\n\
/help - this text";

impl Command {
    /// The command in `text`, if it is one (None: an ordinary message).
    pub fn parse(text: &str) -> Option<Command> {
        let text = text.trim();
        let rest = text.strip_prefix('/')?;
        let (word, arg) = match rest.split_once(char::is_whitespace) {
            Some((w, a)) => (w, a.trim()),
            None => (rest, ""),
        };
        // `/cmd@botname`
        let word = word.split_once('@').map_or(word, |(w, _)| w);
        if word.is_empty() || !word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            // "/ etc/hosts is..." or "/path/to/file": a message, not a command.
            return None;
        }
        let arg = (!arg.is_empty()).then(|| arg.to_owned());
        Some(match word.to_ascii_lowercase().as_str() {
            "new" | "reset" => Command::New,
            "model" => Command::Model(arg),
            "persona" => Command::Persona(arg),
            "status" => Command::Status,
            "help" | "start" => Command::Help,
            other => Command::Unknown(other.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commands_parse() {
        assert_eq!(Command::parse("/new"), Some(Command::New));
        assert_eq!(Command::parse("  /status  "), Some(Command::Status));
        assert_eq!(Command::parse("/start"), Some(Command::Help));
        assert_eq!(
            Command::parse("/model@zocalo_bot openai:gpt-4o-mini"),
            Some(Command::Model(Some("openai:gpt-4o-mini".into())))
        );
        assert_eq!(Command::parse("/model"), Some(Command::Model(None)));
        assert_eq!(
            Command::parse("/persona   coder "),
            Some(Command::Persona(Some("coder".into())))
        );
        assert_eq!(Command::parse("/HELP"), Some(Command::Help));
        assert_eq!(
            Command::parse("/frobnicate"),
            Some(Command::Unknown("frobnicate".into()))
        );
    }

    #[test]
    fn ordinary_messages_are_not_commands() {
        for m in [
            "hello",
            "/etc/hosts has what?",
            "/ hi",
            "",
            "/",
            "what is 1/2",
            "/a-b",
        ] {
            assert_eq!(Command::parse(m), None, "{m:?}");
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,60}") {
            let _ = Command::parse(&s);
        }
    }
}
