//! `berth user|org|team|grant|repo|key ...`: the directory through the admin API. Listings
//! print JSON (stable for scripts); changes print one line saying what was done.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};

use super::admin_client::AdminClient;
use crate::cli::{
    DirectoryArgs, GrantCommand, KeyCommand, OrgCommand, RepoCommand, TeamCommand, UserCommand,
};

fn print(value: &Value) -> anyhow::Result<()> {
    #[allow(clippy::print_stdout)] // the command's output
    {
        println!("{}", serde_json::to_string_pretty(value)?);
    }
    Ok(())
}

fn said(line: &str) {
    #[allow(clippy::print_stdout)] // the command's output
    {
        println!("{line}");
    }
}

/// The password of a user being created or changed: a file, `BERTH_NEW_PASSWORD`, or a
/// prompt (twice) on a terminal.
fn new_password(file: Option<&Path>) -> anyhow::Result<String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(text.lines().next().unwrap_or_default().to_owned());
    }
    if let Ok(p) = std::env::var("BERTH_NEW_PASSWORD") {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("New password: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            bail!("the passwords differ");
        }
        return Ok(first);
    }
    bail!("no new password: give --new-password-file, set BERTH_NEW_PASSWORD, or run on a terminal")
}

/// Path segments are names we validated or the server will refuse; encode `/` in none but
/// repository names (which the route takes whole).
fn seg(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `berth user ...`
pub async fn user(args: DirectoryArgs<UserCommand>) -> anyhow::Result<()> {
    let c = AdminClient::new(&args.admin)?;
    match args.command {
        UserCommand::Add {
            name,
            admin,
            new_password_file,
        } => {
            let password = new_password(new_password_file.as_deref())?;
            c.call(
                Method::POST,
                "users",
                Some(&json!({ "name": name, "password": password, "admin": admin })),
            )
            .await?;
            said(&format!("created user {name}"));
        }
        UserCommand::List => print(&c.call(Method::GET, "users", None).await?)?,
        UserCommand::Delete { name } => {
            c.call(Method::DELETE, &format!("users/{}", seg(&name)), None)
                .await?;
            said(&format!("deleted user {name}"));
        }
        UserCommand::Passwd {
            name,
            new_password_file,
        } => {
            let password = new_password(new_password_file.as_deref())?;
            c.call(
                Method::PUT,
                &format!("users/{}/password", seg(&name)),
                Some(&json!({ "password": password })),
            )
            .await?;
            said(&format!("changed the password of {name}"));
        }
    }
    Ok(())
}

/// `berth org ...`
pub async fn org(args: DirectoryArgs<OrgCommand>) -> anyhow::Result<()> {
    let c = AdminClient::new(&args.admin)?;
    match args.command {
        OrgCommand::Add { name } => {
            c.call(Method::POST, "orgs", Some(&json!({ "name": name })))
                .await?;
            said(&format!("created organization {name}"));
        }
        OrgCommand::List => print(&c.call(Method::GET, "orgs", None).await?)?,
        OrgCommand::Delete { name } => {
            c.call(Method::DELETE, &format!("orgs/{}", seg(&name)), None)
                .await?;
            said(&format!("deleted organization {name}"));
        }
    }
    Ok(())
}

/// `berth team ...`
pub async fn team(args: DirectoryArgs<TeamCommand>) -> anyhow::Result<()> {
    let c = AdminClient::new(&args.admin)?;
    match args.command {
        TeamCommand::Add { org, team } => {
            c.call(
                Method::POST,
                &format!("orgs/{}/teams", seg(&org)),
                Some(&json!({ "name": team })),
            )
            .await?;
            said(&format!("created team {org}/{team}"));
        }
        TeamCommand::List { org } => print(
            &c.call(Method::GET, &format!("orgs/{}/teams", seg(&org)), None)
                .await?,
        )?,
        TeamCommand::Delete { org, team } => {
            c.call(
                Method::DELETE,
                &format!("orgs/{}/teams/{}", seg(&org), seg(&team)),
                None,
            )
            .await?;
            said(&format!("deleted team {org}/{team}"));
        }
        TeamCommand::AddMember { org, team, user } => {
            c.call(
                Method::PUT,
                &format!(
                    "orgs/{}/teams/{}/members/{}",
                    seg(&org),
                    seg(&team),
                    seg(&user)
                ),
                None,
            )
            .await?;
            said(&format!("added {user} to {org}/{team}"));
        }
        TeamCommand::RemoveMember { org, team, user } => {
            c.call(
                Method::DELETE,
                &format!(
                    "orgs/{}/teams/{}/members/{}",
                    seg(&org),
                    seg(&team),
                    seg(&user)
                ),
                None,
            )
            .await?;
            said(&format!("removed {user} from {org}/{team}"));
        }
    }
    Ok(())
}

/// `berth grant ...`
pub async fn grant(args: DirectoryArgs<GrantCommand>) -> anyhow::Result<()> {
    let c = AdminClient::new(&args.admin)?;
    match args.command {
        GrantCommand::Add {
            subject,
            target,
            role,
        } => {
            c.call(
                Method::POST,
                "grants",
                Some(&json!({ "subject": subject, "target": target, "role": role })),
            )
            .await?;
            said(&format!("granted {role} on {target} to {subject}"));
        }
        GrantCommand::List => print(&c.call(Method::GET, "grants", None).await?)?,
        GrantCommand::Remove { subject, target } => {
            c.call(
                Method::DELETE,
                "grants",
                Some(&json!({ "subject": subject, "target": target })),
            )
            .await?;
            said(&format!("removed the grant on {target} to {subject}"));
        }
    }
    Ok(())
}

/// `berth repo ...`
pub async fn repo(args: DirectoryArgs<RepoCommand>) -> anyhow::Result<()> {
    let c = AdminClient::new(&args.admin)?;
    match args.command {
        RepoCommand::Add { name, public } => {
            c.call(
                Method::POST,
                "repositories",
                Some(&json!({ "name": name, "public": public })),
            )
            .await?;
            said(&format!("created repository {name}"));
        }
        RepoCommand::List => print(&c.call(Method::GET, "repositories", None).await?)?,
        RepoCommand::Visibility { name, visibility } => {
            c.call(
                Method::PATCH,
                &format!("repositories/{name}"),
                Some(&json!({ "public": visibility == "public" })),
            )
            .await?;
            said(&format!("{name} is now {visibility}"));
        }
        RepoCommand::Delete { name } => {
            c.call(Method::DELETE, &format!("repositories/{name}"), None)
                .await?;
            said(&format!("deleted repository {name}"));
        }
    }
    Ok(())
}

/// `berth key ...`
pub async fn key(args: DirectoryArgs<KeyCommand>) -> anyhow::Result<()> {
    let c = AdminClient::new(&args.admin)?;
    match args.command {
        KeyCommand::List => print(&c.call(Method::GET, "signing-keys", None).await?)?,
        KeyCommand::Rotate => {
            let answer = c.call(Method::POST, "signing-keys", None).await?;
            said(&format!(
                "new signing key {}",
                answer["kid"].as_str().unwrap_or("?")
            ));
        }
    }
    Ok(())
}
