//! Where `kbsync user create` gets a password: never from the command line (where `ps`, shell
//! history and audit logs would keep it), but from a prompt on the terminal, a file, or stdin.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

/// How a command is given a password. Without a flag, it is asked for on the terminal.
#[derive(Args, Clone, Debug)]
pub struct PasswordArgs {
    /// Read the password from this file (its first line; keep the file private).
    #[arg(long, value_name = "PATH", conflicts_with = "password_stdin")]
    password_file: Option<PathBuf>,
    /// Read the password from standard input (its first line), e.g. from a secret manager.
    #[arg(long)]
    password_stdin: bool,
    /// Refused: a password on the command line is visible to other users and kept in shell
    /// history. Kept only to say so clearly.
    #[arg(long, hide = true, value_name = "PASSWORD", allow_hyphen_values = true)]
    password: Option<String>,
}

/// The longest password file or input read; longer passwords are refused anyway.
const MAX_INPUT_BYTES: u64 = 64 * 1024;

impl PasswordArgs {
    /// The password, from wherever the arguments say.
    pub fn read(&self) -> anyhow::Result<String> {
        if self.password.is_some() {
            anyhow::bail!(
                "--password is not accepted: a password on the command line is visible to other users and kept \
                 in shell history; use --password-file PATH, --password-stdin, or type it at the prompt"
            );
        }
        let password = if let Some(path) = &self.password_file {
            from_file(path)?
        } else if self.password_stdin {
            let mut text = String::new();
            std::io::stdin()
                .lock()
                .take(MAX_INPUT_BYTES)
                .read_to_string(&mut text)
                .context("cannot read the password from standard input")?;
            first_line(&text).to_owned()
        } else {
            prompt()?
        };
        if password.is_empty() {
            anyhow::bail!("the password is empty");
        }
        Ok(password)
    }
}

fn from_file(path: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_INPUT_BYTES).read_to_string(&mut text))
        .with_context(|| format!("--password-file: cannot read {}", path.display()))?;
    Ok(first_line(&text).to_owned())
}

/// Asks twice on the terminal, without echo.
fn prompt() -> anyhow::Result<String> {
    let ask = |question: &str| {
        rpassword::prompt_password(question).context(
            "cannot ask for the password: there is no terminal; use --password-file PATH or --password-stdin",
        )
    };
    let password = ask("Password: ")?;
    if ask("Password again: ")? != password {
        anyhow::bail!("the two passwords differ");
    }
    Ok(password)
}

/// The text up to its first line break (`\n` or `\r\n`): files and pipes usually end in one,
/// and a password holds none.
fn first_line(text: &str) -> &str {
    let line = text.split('\n').next().unwrap_or_default();
    line.strip_suffix('\r').unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::first_line;

    #[test]
    fn the_password_is_the_first_line_without_its_line_break() {
        assert_eq!(first_line("a long password\n"), "a long password");
        assert_eq!(first_line("a long password\r\n"), "a long password");
        assert_eq!(first_line("a long password"), "a long password");
        assert_eq!(first_line(" spaces stay \nsecond line"), " spaces stay ");
        assert_eq!(first_line(""), "");
    }
}
