//! `cargo xtask docs-check`: the shell commands in the Markdown docs, extracted and checked.
//!
//! Every `cargo xtask ...` line must parse with xtask's own command line; `train` lines (and
//! `kindling train` lines) must pass `kindling train --dry-run`, which resolves and validates
//! every flag; the cheap commands (`summary`, `filters`, `preview`, `kindling dataset`,
//! `kindling activations`, `kindling check-device`) run for real in a scratch folder. The rest
//! (tests, benchmarks, launchers such as mpirun or torchrun) are listed as not run.

/// A shell command of a Markdown file: its line number and text (continuations joined,
/// trailing comment removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    pub line: usize,
    pub text: String,
}

/// The commands inside the ```sh / ```bash / ```shell blocks of `markdown`.
pub fn shell_commands(markdown: &str) -> Vec<ShellCommand> {
    let mut out = Vec::new();
    let mut in_shell = false;
    let mut in_fence = false;
    let mut pending: Option<ShellCommand> = None;
    let mut heredoc: Option<String> = None;
    for (i, raw) in markdown.lines().enumerate() {
        let trimmed = raw.trim();
        if let Some(fence) = trimmed.strip_prefix("```") {
            if in_fence {
                in_fence = false;
                in_shell = false;
            } else {
                in_fence = true;
                in_shell = matches!(fence.trim(), "sh" | "bash" | "shell" | "console");
            }
            continue;
        }
        if !in_shell {
            continue;
        }
        if let Some(end) = &heredoc {
            if trimmed == end {
                heredoc = None;
            }
            continue;
        }
        let line = strip_comment(trimmed);
        if line.is_empty() {
            continue;
        }
        if let Some(at) = line.find("<<") {
            // The body of a here-document is data, not commands.
            let marker = line[at + 2..].trim().trim_matches(['\'', '"', '-']);
            heredoc = Some(marker.to_string());
        }
        let (body, continued) = match line.strip_suffix('\\') {
            Some(b) => (b.trim_end(), true),
            None => (line, false),
        };
        let cmd = match pending.take() {
            Some(mut p) => {
                p.text.push(' ');
                p.text.push_str(body);
                p
            }
            None => ShellCommand {
                line: i + 1,
                text: body.to_string(),
            },
        };
        if continued {
            pending = Some(cmd);
        } else {
            out.push(cmd);
        }
    }
    out
}

/// The line without a trailing `# comment` (a `#` after whitespace, outside quotes).
fn strip_comment(line: &str) -> &str {
    if line.starts_with('#') {
        return "";
    }
    let mut quote = None;
    let mut prev_space = false;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev_space => return line[..i].trim_end(),
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    line
}

/// Splits a command into words (single and double quotes group, no expansions).
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut started = false;
    for c in text.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (_, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(word);
    }
    out
}

/// The words after leading `VAR=value` assignments.
pub fn without_env(words: &[String]) -> &[String] {
    let skip = words
        .iter()
        .take_while(|w| {
            w.split_once('=').is_some_and(|(name, _)| {
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        })
        .count();
    &words[skip..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_come_from_shell_blocks_only() {
        let md = "text\n```sh\ncargo xtask train   # the default run\n# a comment\n\
                  cargo xtask summary \\\n  --model cifar\ncat > hosts <<EOF\nnode1 slots=2\nEOF\n\
                  ```\n```rust\nlet x = 1;\n```\n```\nnot shell\n```\n";
        let cmds = shell_commands(md);
        let texts: Vec<&str> = cmds.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "cargo xtask train",
                "cargo xtask summary --model cifar",
                "cat > hosts <<EOF"
            ]
        );
        assert_eq!(cmds[1].line, 5);
    }

    #[test]
    fn words_and_environment() {
        let w = words("RANK=0 MASTER_ADDR=node1 kindling train --out 'my runs' --x=\"a b\"");
        assert_eq!(
            without_env(&w),
            ["kindling", "train", "--out", "my runs", "--x=a b"]
        );
        assert_eq!(
            strip_comment("echo '# not a comment' # comment"),
            "echo '# not a comment'"
        );
    }
}
