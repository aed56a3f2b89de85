//! `kill-switch on|off|status`: the runtime kill switch (persisted in the database and audited)
//! beside the environment's EXECUTION_KILL_SWITCH; runs are blocked when either is on.

use std::path::Path;

use clap::{Args, ValueEnum};

use super::exit;
use super::format::{print_fields, print_json};
use super::session::{OutputArgs, request, unexpected};
use crate::admin::protocol::{AdminRequest, AdminResponse};
use crate::ops::KillSwitchView;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KillSwitchAction {
    /// Block every run from now on (manual and scheduled).
    On,
    /// Lift the runtime switch (EXECUTION_KILL_SWITCH, if set, still blocks).
    Off,
    /// Show both switches.
    Status,
}

/// `creditbrain kill-switch`.
#[derive(Args, Debug)]
pub struct KillSwitchArgs {
    #[arg(value_enum)]
    pub action: KillSwitchAction,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn kill_switch(socket: &Path, args: &KillSwitchArgs) -> i32 {
    let json = args.output.json;
    let request_message = match args.action {
        KillSwitchAction::On => AdminRequest::SetKillSwitch { on: true },
        KillSwitchAction::Off => AdminRequest::SetKillSwitch { on: false },
        KillSwitchAction::Status => AdminRequest::KillSwitchStatus,
    };
    let view = match request(socket, json, request_message).await {
        Ok(AdminResponse::KillSwitch(view)) => view,
        Ok(other) => return unexpected(&other, json),
        Err(code) => return code,
    };
    if json {
        print_json(&view);
    } else {
        print_kill_switch(&view);
    }
    if args.action == KillSwitchAction::Off && view.engaged {
        eprintln!(
            "creditbrain: kill_switch_env: EXECUTION_KILL_SWITCH=true still blocks every run; set it to false and restart the daemon"
        );
        return exit::FAILURE;
    }
    exit::OK
}

fn print_kill_switch(view: &KillSwitchView) {
    let on_off = |on: bool| if on { "on" } else { "off" };
    if view.engaged {
        out!("kill switch: ENGAGED (every run is blocked at the policy check)");
    } else {
        out!("kill switch: off (runs may start)");
    }
    print_fields(&[
        (
            "environment (EXECUTION_KILL_SWITCH)",
            on_off(view.env).to_string(),
        ),
        (
            "runtime (creditbrain kill-switch)",
            on_off(view.runtime).to_string(),
        ),
    ]);
}
