//! docs/operating.md cannot drift from the product: every `berth` command in its shell blocks
//! (and the systemd unit's `ExecStart`) parses with Berth's own argument parser, every
//! `berth serve` line and TOML block passes the configuration loader (`--print-config`), and
//! the one-machine rehearsal at its end runs for real.

mod support;

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser as _;
use support::{external_tool, run_cmd_with};

/// The command line of the `berth` binary, compiled into this test as it is into the binary
/// (the package has no library target to import it from).
#[path = "../src"]
#[allow(dead_code, unreachable_pub)]
mod berth_src {
    pub mod cli;
}

const GUIDE: &str = include_str!("../docs/operating.md");
/// Where the guide's TOML block is meant to live; commands naming it get that block.
const CONFIG_PATH: &str = "/etc/berth/berth.toml";

/// A fenced block of the guide: its language and text, and the heading above it.
struct Block {
    lang: String,
    text: String,
    heading: String,
}

fn blocks() -> Vec<Block> {
    let mut out = Vec::new();
    let mut heading = String::new();
    let mut open: Option<Block> = None;
    for line in GUIDE.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(lang)) => {
                open = Some(Block {
                    lang: lang.trim().to_owned(),
                    text: String::new(),
                    heading: heading.clone(),
                });
            }
            (Some(_), Some(_)) => out.extend(open.take()),
            (Some(block), None) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {
                if line.starts_with('#') {
                    heading = line.trim_start_matches('#').trim().to_owned();
                }
            }
        }
    }
    assert!(open.is_none(), "an unclosed code block");
    out
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Op(String),
}

/// Splits shell text into words (quotes removed, `$VAR` left as written) and operators
/// (`|`, `||`, `&&`, `&`, `;`, `$(`, `(`, `)`, redirections); comments and line
/// continuations are dropped. Enough of sh for the guide, not a shell.
fn shell_tokens(text: &str) -> Vec<Tok> {
    let text = text.replace("\\\n", " ");
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut i = 0;
    let flush = |word: &mut String, in_word: &mut bool, toks: &mut Vec<Tok>| {
        if *in_word {
            toks.push(Tok::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&d| d == c)
                    .expect("an unclosed quote")
                    + i
                    + 1;
                word.extend(&chars[i + 1..end]);
                in_word = true;
                i = end;
            }
            '#' if !in_word => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            ' ' | '\t' => flush(&mut word, &mut in_word, &mut toks),
            '\n' | ';' | '(' | ')' => {
                flush(&mut word, &mut in_word, &mut toks);
                toks.push(Tok::Op(if c == '\n' { ";".into() } else { c.into() }));
            }
            '$' if chars.get(i + 1) == Some(&'(') => {
                flush(&mut word, &mut in_word, &mut toks);
                toks.push(Tok::Op("$(".into()));
                i += 1;
            }
            '|' | '&' => {
                let digit_redirect = c == '&' && chars.get(i + 1) == Some(&'>');
                if digit_redirect {
                    flush(&mut word, &mut in_word, &mut toks);
                    toks.push(Tok::Op("&>".into()));
                    i += 1;
                } else {
                    flush(&mut word, &mut in_word, &mut toks);
                    let double = chars.get(i + 1) == Some(&c);
                    toks.push(Tok::Op(if double { format!("{c}{c}") } else { c.into() }));
                    i += usize::from(double);
                }
            }
            '>' | '<' => {
                // `2>` and `2>&1`: the digit belongs to the redirection.
                if in_word && word.chars().all(|d| d.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                flush(&mut word, &mut in_word, &mut toks);
                let mut op = c.to_string();
                while matches!(chars.get(i + 1), Some('>')) {
                    op.push('>');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&'&') {
                    // `>&1`: complete in itself.
                    i += 1;
                    while chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                        i += 1;
                    }
                    op.push_str("&N");
                }
                toks.push(Tok::Op(op));
            }
            _ => {
                word.push(c);
                in_word = true;
            }
        }
        i += 1;
    }
    flush(&mut word, &mut in_word, &mut toks);
    toks
}

/// A `berth` command found in the guide: its arguments and the variables set before it.
#[derive(Debug)]
struct BerthCommand {
    args: Vec<String>,
    env: Vec<(String, String)>,
    source: String,
}

/// Every `berth` command in `text`: a simple command whose program is `berth` or ends in
/// `/berth`, or the arguments after `/berth` or a `berth:TAG` image in a `docker` command.
fn berth_commands(text: &str) -> Vec<BerthCommand> {
    let mut commands = Vec::new();
    let mut segment: Vec<String> = Vec::new();
    let mut toks = shell_tokens(text).into_iter().peekable();
    let mut end = |segment: &mut Vec<String>| {
        let words = std::mem::take(segment);
        let mut env = Vec::new();
        let mut rest = words.as_slice();
        loop {
            match rest.split_first() {
                Some((w, tail)) if w == "sudo" => {
                    // Its options, and the user or group of `-u`/`-g`.
                    rest = tail;
                    while let Some((opt, tail)) = rest.split_first() {
                        match opt.as_str() {
                            "-u" | "-g" => rest = tail.get(1..).unwrap_or_default(),
                            o if o.starts_with('-') => rest = tail,
                            _ => break,
                        }
                    }
                }
                Some((w, tail))
                    if ["!", "then", "do", "else", "exec", "if", "until", "while"]
                        .contains(&w.as_str()) =>
                {
                    rest = tail;
                }
                Some((w, tail)) if is_assignment(w) => {
                    let (k, v) = w.split_once('=').unwrap();
                    env.push((k.to_owned(), v.to_owned()));
                    rest = tail;
                }
                _ => break,
            }
        }
        let args = match rest.split_first() {
            Some((program, args)) if program == "berth" || program.ends_with("/berth") => {
                Some(args.to_vec())
            }
            Some((program, args)) if program == "docker" => args
                .iter()
                .position(|w| w.ends_with("/berth") || w.starts_with("berth:"))
                .map(|at| match &args[at + 1..] {
                    // The image's CMD.
                    [] if args[at].starts_with("berth:") => vec!["serve".to_owned()],
                    rest => rest.to_vec(),
                }),
            _ => None,
        };
        if let Some(args) = args {
            commands.push(BerthCommand {
                source: words.join(" "),
                args,
                env,
            });
        }
    };
    while let Some(tok) = toks.next() {
        match tok {
            Tok::Word(w) => segment.push(w),
            Tok::Op(op) if op.starts_with('>') || op.starts_with('<') || op == "&>" => {
                if !op.ends_with("&N") {
                    toks.next(); // the redirection's file
                }
            }
            Tok::Op(_) => end(&mut segment),
        }
    }
    end(&mut segment);
    commands
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(k, _)| {
        !k.is_empty()
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !k.starts_with(|c: char| c.is_ascii_digit())
    })
}

/// Every `berth` command of the guide's shell blocks and the systemd unit's `ExecStart`.
fn guide_commands() -> Vec<BerthCommand> {
    let mut commands = Vec::new();
    for block in blocks() {
        match block.lang.as_str() {
            "sh" => commands.extend(berth_commands(&block.text)),
            "ini" => {
                for line in block.text.lines() {
                    if let Some(exec) = line.strip_prefix("ExecStart=") {
                        commands.extend(berth_commands(exec));
                    }
                }
            }
            _ => {}
        }
    }
    commands
}

fn guide_toml() -> String {
    let tomls: Vec<Block> = blocks().into_iter().filter(|b| b.lang == "toml").collect();
    assert_eq!(tomls.len(), 1, "the guide has one configuration file");
    tomls.into_iter().next().unwrap().text
}

#[test]
fn the_guide_s_shell_is_split_as_sh_would() {
    let cmds = berth_commands(
        "X=1 berth serve --a 'b c' >r.log 2>&1 &\nTOKEN=$(berth join-token --ttl 1h)\n\
         docker compose exec -T berth-1 /berth gc --dry-run > out # comment\n\
         docker run --rm --name berth berth:latest serve --help\nsudo -u x true && berth fsck < in\n\
         sudo -u berth berth emergency-repair --yes",
    );
    let args: Vec<String> = cmds.iter().map(|c| c.args.join(" ")).collect();
    assert_eq!(
        args,
        [
            "serve --a b c",
            "join-token --ttl 1h",
            "gc --dry-run",
            "serve --help",
            "fsck",
            "emergency-repair --yes"
        ]
    );
    assert_eq!(cmds[0].env, [("X".to_owned(), "1".to_owned())]);
}

/// Each `berth` command of the guide is one the parser accepts, and each subcommand the
/// guide promises to cover appears in it.
#[test]
fn every_berth_command_in_the_guide_parses() {
    let commands = guide_commands();
    let mut seen = std::collections::BTreeSet::new();
    for cmd in &commands {
        let argv = std::iter::once("berth".to_owned()).chain(cmd.args.iter().cloned());
        match berth_src::cli::Cli::try_parse_from(argv) {
            Ok(_) => {}
            Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {}
            Err(e) => panic!("`{}` does not parse:\n{e}", cmd.source),
        }
        seen.insert(cmd.args.first().cloned().unwrap_or_default());
    }
    for sub in [
        "serve",
        "join-token",
        "replicas",
        "remove-replica",
        "emergency-repair",
        "healthcheck",
        "backup",
        "restore",
        "gc",
        "fsck",
        "user",
    ] {
        assert!(seen.contains(sub), "the guide shows no `berth {sub}`");
    }
    assert!(
        commands.len() >= 40,
        "only {} commands found",
        commands.len()
    );
}

/// `berth serve --print-config` with each guide's `serve` line (the guide's TOML block
/// standing in for /etc/berth/berth.toml) and with the TOML block alone: the configuration
/// loader accepts them, TLS modes and URL schemes included.
#[test]
fn every_serve_line_and_the_config_file_in_the_guide_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, guide_toml()).unwrap();
    let config = config.to_str().unwrap();
    let mut serves = 0;
    let lines = guide_commands()
        .into_iter()
        .filter(|c| c.args.first().map(String::as_str) == Some("serve"));
    let toml_alone = BerthCommand {
        args: vec!["serve".into(), "--config".into(), CONFIG_PATH.into()],
        env: Vec::new(),
        source: "the guide's TOML block".into(),
    };
    for cmd in lines.chain([toml_alone]) {
        if cmd.args.iter().any(|a| a == "--help") {
            continue;
        }
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.args(
            cmd.args
                .iter()
                .map(|a| if a == CONFIG_PATH { config } else { a }),
        )
        .arg("--print-config")
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir.path());
        let out = run_cmd_with(c, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "`{}` --print-config: {}",
            cmd.source,
            String::from_utf8_lossy(&out.stderr)
        );
        serves += 1;
    }
    assert!(serves >= 8, "only {serves} serve lines");
}

/// The guide's rehearsal (three replicas on loopback, joins, GC, fsck, a backup, removing and
/// re-adding a replica, quorum loss and emergency repair, a restore) runs as written, on free
/// ports instead of 5001..5003, with the `berth` under test first on the PATH.
#[test]
fn the_one_machine_rehearsal_of_the_guide_runs_as_written() {
    if !external_tool("openssl", &["version"]) {
        return;
    }
    let rehearsal: Vec<Block> = blocks()
        .into_iter()
        .filter(|b| b.heading == "Rehearse on one machine" && b.lang == "sh")
        .collect();
    assert_eq!(rehearsal.len(), 1, "one rehearsal block");
    let mut script = rehearsal[0].text.clone();
    // The guide's fixed ports, moved to free ones (checked free just before; the script
    // cannot print a port 0 picked for it into its own later lines).
    for port in ["5001", "5002", "5003"] {
        let from = format!("127.0.0.1:{port}");
        assert!(script.contains(&from), "the rehearsal uses {from}");
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        script = script.replace(&from, &free.to_string());
    }

    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_berth")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let stdout = dir.path().join("stdout");
    let mut child = Command::new("bash");
    child
        .args(["-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("RUST_LOG", "info,openraft=off")
        // Its own process group: whatever it leaves running is stopped with it.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("BERTH_") {
            child.env_remove(k);
        }
    }
    let mut child = child.spawn().expect("bash");
    let group = child.id();
    let stop_group = || {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .status();
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    stop_group();
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
    }
    let _ = child.wait();
    let out = std::fs::read_to_string(&stdout).unwrap_or_default();
    eprintln!("--- the rehearsal's output ---\n{out}");
    let logs = || {
        let work = dir.path().join("berth-rehearsal");
        ["r1.log", "r2.log", "r3.log", "restored.log"]
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(work.join(f)).unwrap_or_default();
                format!("--- {f} ---\n{text}")
            })
            .collect::<String>()
    };
    let status = status.unwrap_or_else(|| {
        panic!(
            "the rehearsal did not finish in 600 s\n{out}\n{stderr}\n{}",
            logs()
        )
    });
    assert!(
        status.success(),
        "the rehearsal failed ({status})\n--- stdout ---\n{out}\n--- stderr ---\n{stderr}\n{}",
        logs()
    );
    assert!(out.contains("no quorum: writes fail"), "{out}");
    assert!(out.contains("now a one-replica cluster"), "{out}");
    assert!(out.contains("new cluster"), "{out}");
    // The restored cluster has the user added before the backup.
    let restored = out.split("new cluster").nth(1).unwrap_or_default();
    assert!(restored.contains("alice"), "{out}");
}
