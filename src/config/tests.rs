//! Tests of the configuration module: every variable's range, strict parsing, defaults, the signer,
//! `.env` precedence, and secrets kept out of `describe()`, `Debug` and error messages.

use super::*;
use solana_sdk::signature::Keypair;

const BAGS: &str = "bags-SECRET-7f3a";
const HELIUS: &str = "helius-SECRET-91bc";
const OPENROUTER: &str = "sk-or-v1-SECRET-55de";
const TOKEN: &str = "api-token-SECRET-0c1d";

/// The four required secrets plus a signer: the smallest valid configuration.
fn base() -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for (name, value) in [
        ("BAGS_API_KEY", BAGS),
        ("HELIUS_API_KEY", HELIUS),
        ("OPENROUTER_MANAGEMENT_KEY", OPENROUTER),
        ("API_AUTH_TOKEN", TOKEN),
    ] {
        vars.insert(name.to_owned(), value.to_owned());
    }
    vars.insert(
        "SIGNER_PRIVATE_KEY".to_owned(),
        Keypair::new().to_base58_string(),
    );
    vars
}

fn with(overrides: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    let mut vars = base();
    for (name, value) in overrides {
        vars.insert((*name).to_owned(), (*value).to_owned());
    }
    Config::from_vars(&vars)
}

fn ok(overrides: &[(&str, &str)]) -> Config {
    match with(overrides) {
        Ok(config) => config,
        Err(errors) => panic!("{overrides:?} should be valid:\n{errors}"),
    }
}

/// The single problem `overrides` cause; fails unless it is exactly one, about `variable`.
fn problem_with(overrides: &[(&str, &str)], variable: &str) -> String {
    let errors = match with(overrides) {
        Ok(_) => panic!("{overrides:?} should be rejected"),
        Err(errors) => errors,
    };
    assert_eq!(errors.problems.len(), 1, "{overrides:?}: {errors}");
    assert_eq!(errors.problems[0].variable, variable, "{errors}");
    errors.problems[0].message.clone()
}

fn variables(errors: &ConfigErrors) -> Vec<&str> {
    errors
        .problems
        .iter()
        .map(|p| p.variable.as_str())
        .collect()
}

#[test]
fn defaults_apply_when_unset() {
    let config = ok(&[]);
    assert_eq!(config.host, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(config.port, 3001);
    assert_eq!(config.database_path, PathBuf::from("./data/creditbrain.db"));
    assert_eq!(config.database_url, None);
    assert_eq!(
        config.admin_socket_path,
        PathBuf::from("./data/creditbrain.sock")
    );
    assert_eq!(config.log_level, LogLevel::Info);
    assert_eq!(config.log_level.as_str(), "info");
    assert_eq!(config.node_env, NodeEnv::Development);
    assert_eq!(config.openrouter_base_url, "https://openrouter.ai/api/v1");
    assert_eq!(
        config.bags_api_base_url,
        "https://public-api-v2.bags.fm/api/v1"
    );
    assert_eq!(config.health_probe_interval, Duration::from_secs(15));
    assert_eq!(config.solana_network, SolanaNetwork::MainnetBeta);
    assert_eq!(config.evm_private_key, None);
    assert_eq!(config.evm_chain_id, 8453);
    assert_eq!(config.fee_threshold_lamports, 5_000_000_000);
    assert_eq!(config.fee_source, FeeSource::ClaimablePositions);
    assert_eq!(config.swap_slippage_bps, 50);
    assert_eq!(config.default_key_limit_micro_usd, 10_000_000);
    assert_eq!(config.key_limit_reset, Some(LimitReset::Monthly));
    assert_eq!(config.key_expiry_days, 365);
    assert_eq!(config.credit_pool_reserve_bps, 1000);
    assert_eq!(config.distribution_mode, DistributionMode::TopNHolders);
    assert_eq!(config.distribution_top_n, 100);
    assert_eq!(config.distribution_token_mint, None);
    assert_eq!(config.cron_schedule.source(), "0 */6 * * *");
    assert_eq!(config.min_cron_interval_hours, 1);
    assert!(!config.dry_run);
    assert!(!config.kill_switch);
    assert_eq!(config.max_daily_runs, 4);
    assert_eq!(config.max_claimable_lamports_per_run, 100_000_000_000);
    assert_eq!(config.max_key_limit_micro_usd, 100_000_000);
    assert_eq!(config.key_rotation_days, 90);
    assert_eq!(config.usage_poll_interval, Duration::from_secs(15 * 60));
    assert_eq!(config.bags_agent_username, None);
    assert_eq!(config.bags_agent_jwt, None);
    assert_eq!(config.bags_agent_wallet_address, None);
    assert_eq!(config.key_encryption_key, None);
    assert_eq!(
        config.helius_rpc_url.expose(),
        format!("https://mainnet.helius-rpc.com/?api-key={HELIUS}")
    );
    assert_eq!(config.solana_rpc_url, config.helius_rpc_url);
    assert_eq!(config.bags_api_key.expose(), BAGS);
    assert_eq!(config.api_auth_token.expose(), TOKEN);
    assert!(matches!(config.signer, SignerSource::PrivateKey(_)));
    assert!(
        config
            .describe()
            .iter()
            .filter(|row| !row.name.starts_with("SIGNER") && !base().contains_key(row.name))
            .all(|row| row.source == ValueSource::Default)
    );
}

#[test]
fn blank_values_count_as_unset() {
    let config = ok(&[
        ("PORT", ""),
        ("DRY_RUN", "   "),
        ("LOG_LEVEL", "\t"),
        ("HOST", ""),
    ]);
    assert_eq!(config.port, 3001);
    assert!(!config.dry_run);
    assert_eq!(config.log_level, LogLevel::Info);
    let row = |name: &str| {
        config
            .describe()
            .into_iter()
            .find(|r| r.name == name)
            .unwrap()
    };
    assert_eq!(row("PORT").source, ValueSource::Default);
    assert_eq!(row("DRY_RUN").source, ValueSource::Default);
    // Surrounding whitespace is trimmed from real values.
    assert_eq!(ok(&[("PORT", " 8080 ")]).port, 8080);
    assert_eq!(
        ok(&[("API_AUTH_TOKEN", "  tok  ")]).api_auth_token.expose(),
        "tok"
    );
}

#[test]
fn required_secrets_are_required() {
    for name in [
        "BAGS_API_KEY",
        "HELIUS_API_KEY",
        "OPENROUTER_MANAGEMENT_KEY",
        "API_AUTH_TOKEN",
    ] {
        for blank in ["", "   "] {
            let message = problem_with(&[(name, blank)], name);
            assert!(message.contains("is required but not set"), "{message}");
        }
        let mut vars = base();
        vars.remove(name);
        let errors = Config::from_vars(&vars).unwrap_err();
        assert_eq!(variables(&errors), vec![name]);
    }
    let errors = Config::from_vars(&BTreeMap::new()).unwrap_err();
    assert_eq!(
        variables(&errors),
        vec![
            "BAGS_API_KEY",
            "HELIUS_API_KEY",
            "OPENROUTER_MANAGEMENT_KEY",
            "API_AUTH_TOKEN",
            SIGNER_VARIABLES,
        ]
    );
}

struct Range {
    name: &'static str,
    accepted: &'static [&'static str],
    rejected: &'static [&'static str],
    expected: &'static str,
}

/// Every numeric variable: boundaries accepted, one step outside them refused, junk refused, and
/// the message names the accepted range and quotes what was given.
#[test]
fn every_numeric_variable_enforces_its_range() {
    let junk: &[&str] = &["abc", "12abc", "1e3", "0x10", "1_0", "+1"];
    let cases = [
        Range {
            name: "EVM_CHAIN_ID",
            accepted: &["1", "8453", "18446744073709551615"],
            rejected: &["0", "-1", "84.53", "18446744073709551616"],
            expected: "must be an integer of at least 1",
        },
        Range {
            name: "FEE_THRESHOLD_SOL",
            accepted: &["1", "100", "5.5", "1.000000001", "99.999999999", "007"],
            rejected: &["0.999999999", "100.000000001", "0", "-5", "101", ".5", "5."],
            expected: "must be a SOL amount from 1 to 100 with at most 9 decimals",
        },
        Range {
            name: "SWAP_SLIPPAGE_BPS",
            accepted: &["0", "50", "1000"],
            rejected: &["-1", "1001", "50.5"],
            expected: "must be an integer from 0 to 1000",
        },
        Range {
            name: "DEFAULT_KEY_LIMIT_USD",
            accepted: &["1", "1.01", "99.99", "100"],
            rejected: &["0.99", "0", "-1"],
            expected: "must be a USD amount of at least 1 with at most 2 decimals",
        },
        Range {
            name: "KEY_EXPIRY_DAYS",
            accepted: &["0", "365", "36500"],
            rejected: &["-1", "36501", "1.5"],
            expected: "must be an integer from 0 to 36500",
        },
        Range {
            name: "CREDIT_POOL_RESERVE_PCT",
            accepted: &["0", "0.01", "12.5", "50"],
            rejected: &["50.01", "51", "-1"],
            expected: "must be a percentage from 0 to 50 with at most 2 decimals",
        },
        Range {
            name: "DISTRIBUTION_TOP_N",
            accepted: &["1", "100", "4294967295"],
            rejected: &["0", "-1", "4294967296"],
            expected: "must be an integer of at least 1",
        },
        Range {
            name: "MIN_CRON_INTERVAL_HOURS",
            accepted: &["1", "6"],
            rejected: &["0", "-1", "1.5"],
            expected: "must be an integer of at least 1",
        },
        Range {
            name: "MAX_DAILY_RUNS",
            accepted: &["0", "4", "100000"],
            rejected: &["-1", "4.0"],
            expected: "must be an integer of at least 0",
        },
        Range {
            name: "MAX_CLAIMABLE_SOL_PER_RUN",
            accepted: &["0", "0.000000001", "100", "1000000"],
            rejected: &["-1", "18446744074"],
            expected: "must be a SOL amount of at least 0 with at most 9 decimals",
        },
        Range {
            name: "MAX_KEY_LIMIT_USD",
            accepted: &["10", "10.5", "10000"],
            rejected: &["0.99", "0", "10000.01", "10001", "-1"],
            expected: "must be a USD amount from 1 to 10000 with at most 2 decimals",
        },
        Range {
            name: "KEY_ROTATION_DAYS",
            accepted: &["1", "90", "365"],
            rejected: &["0", "366", "-1"],
            expected: "must be an integer from 1 to 365",
        },
        Range {
            name: "USAGE_POLL_INTERVAL_MIN",
            accepted: &["1", "15", "1440"],
            rejected: &["0", "1441"],
            expected: "must be an integer from 1 to 1440",
        },
        Range {
            name: "PORT",
            accepted: &["0", "1", "3001", "65535"],
            rejected: &["65536", "-1", "80.0"],
            expected: "must be an integer from 0 to 65535",
        },
        Range {
            name: "HEALTH_PROBE_INTERVAL_SEC",
            accepted: &["1", "15", "3600"],
            rejected: &["0", "3601"],
            expected: "must be an integer from 1 to 3600",
        },
        Range {
            name: "BREAKER_COOLDOWN_SEC",
            accepted: &["1", "30", "3600"],
            rejected: &["0", "3601"],
            expected: "must be an integer from 1 to 3600",
        },
        Range {
            name: "API_RATE_LIMIT_PER_MIN",
            accepted: &["1", "600", "1000000"],
            rejected: &["0", "1000001"],
            expected: "must be an integer from 1 to 1000000",
        },
        Range {
            name: "HOLDER_RATE_LIMIT_PER_MIN",
            accepted: &["1", "10", "10000"],
            rejected: &["0", "10001"],
            expected: "must be an integer from 1 to 10000",
        },
    ];
    for case in &cases {
        for value in case.accepted {
            ok(&[(case.name, value)]);
        }
        for value in case.rejected.iter().chain(junk) {
            let message = problem_with(&[(case.name, value)], case.name);
            assert!(
                message.starts_with(case.expected),
                "{}={value:?}: {message}",
                case.name
            );
            assert!(
                message.ends_with(&format!("got {value:?}")),
                "{}={value:?}: {message}",
                case.name
            );
        }
    }
    // The exact message format operators see.
    assert_eq!(
        problem_with(&[("SWAP_SLIPPAGE_BPS", "abc")], "SWAP_SLIPPAGE_BPS"),
        "must be an integer from 0 to 1000, got \"abc\""
    );
}

#[test]
fn numeric_values_land_in_their_fields() {
    let config = ok(&[
        ("EVM_CHAIN_ID", "1"),
        ("SWAP_SLIPPAGE_BPS", "1000"),
        ("KEY_EXPIRY_DAYS", "0"),
        ("DISTRIBUTION_TOP_N", "7"),
        ("MAX_DAILY_RUNS", "0"),
        ("KEY_ROTATION_DAYS", "365"),
        ("USAGE_POLL_INTERVAL_MIN", "1440"),
        ("PORT", "0"),
        ("HEALTH_PROBE_INTERVAL_SEC", "3600"),
        ("MIN_CRON_INTERVAL_HOURS", "6"),
    ]);
    assert_eq!(config.evm_chain_id, 1);
    assert_eq!(config.swap_slippage_bps, 1000);
    assert_eq!(config.key_expiry_days, 0);
    assert_eq!(config.distribution_top_n, 7);
    assert_eq!(config.max_daily_runs, 0);
    assert_eq!(config.key_rotation_days, 365);
    assert_eq!(config.usage_poll_interval, Duration::from_secs(1440 * 60));
    assert_eq!(config.port, 0);
    assert_eq!(config.health_probe_interval, Duration::from_secs(3600));
    assert_eq!(config.min_cron_interval_hours, 6);
}

#[test]
fn money_is_parsed_exactly() {
    let config = ok(&[
        ("FEE_THRESHOLD_SOL", "1.000000001"),
        ("MAX_CLAIMABLE_SOL_PER_RUN", "0.000000001"),
        ("DEFAULT_KEY_LIMIT_USD", "10.5"),
        ("MAX_KEY_LIMIT_USD", "10.55"),
        ("CREDIT_POOL_RESERVE_PCT", "12.5"),
    ]);
    assert_eq!(config.fee_threshold_lamports, 1_000_000_001);
    assert_eq!(config.max_claimable_lamports_per_run, 1);
    assert_eq!(config.default_key_limit_micro_usd, 10_500_000);
    assert_eq!(config.max_key_limit_micro_usd, 10_550_000);
    assert_eq!(config.credit_pool_reserve_bps, 1250);
    assert_eq!(
        ok(&[("FEE_THRESHOLD_SOL", "5")]).fee_threshold_lamports,
        5_000_000_000
    );
    assert_eq!(
        ok(&[("MAX_CLAIMABLE_SOL_PER_RUN", "0")]).max_claimable_lamports_per_run,
        0
    );
    assert_eq!(
        ok(&[("CREDIT_POOL_RESERVE_PCT", "0.01")]).credit_pool_reserve_bps,
        1
    );

    let cents = problem_with(
        &[("DEFAULT_KEY_LIMIT_USD", "10.555")],
        "DEFAULT_KEY_LIMIT_USD",
    );
    assert!(cents.contains("at most 2 decimals"), "{cents}");
    assert!(cents.contains("whole cents"), "{cents}");
    let lamports = problem_with(
        &[("FEE_THRESHOLD_SOL", "1.0000000001")],
        "FEE_THRESHOLD_SOL",
    );
    assert!(
        lamports.contains("1 lamport = 0.000000001 SOL"),
        "{lamports}"
    );
    problem_with(&[("MAX_KEY_LIMIT_USD", "100.001")], "MAX_KEY_LIMIT_USD");
    problem_with(
        &[("CREDIT_POOL_RESERVE_PCT", "10.001")],
        "CREDIT_POOL_RESERVE_PCT",
    );

    let rows = config.describe();
    let value = |name: &str| rows.iter().find(|r| r.name == name).unwrap().value.clone();
    assert_eq!(value("FEE_THRESHOLD_SOL"), "1.000000001");
    assert_eq!(value("MAX_CLAIMABLE_SOL_PER_RUN"), "0.000000001");
    assert_eq!(value("DEFAULT_KEY_LIMIT_USD"), "10.50");
    assert_eq!(value("MAX_KEY_LIMIT_USD"), "10.55");
    assert_eq!(value("CREDIT_POOL_RESERVE_PCT"), "12.5");
}

#[test]
fn default_key_limit_may_not_exceed_the_maximum() {
    let message = problem_with(
        &[
            ("DEFAULT_KEY_LIMIT_USD", "200"),
            ("MAX_KEY_LIMIT_USD", "150"),
        ],
        "DEFAULT_KEY_LIMIT_USD",
    );
    assert_eq!(
        message,
        "must not exceed MAX_KEY_LIMIT_USD (150), got \"200\""
    );
    // Against the default maximum (100) too.
    problem_with(
        &[("DEFAULT_KEY_LIMIT_USD", "100.01")],
        "DEFAULT_KEY_LIMIT_USD",
    );
    ok(&[("DEFAULT_KEY_LIMIT_USD", "100")]);
    ok(&[("DEFAULT_KEY_LIMIT_USD", "1"), ("MAX_KEY_LIMIT_USD", "1")]);
    ok(&[
        ("DEFAULT_KEY_LIMIT_USD", "500"),
        ("MAX_KEY_LIMIT_USD", "10000"),
    ]);
    // When one side is itself invalid, only that side is reported.
    let errors = with(&[("DEFAULT_KEY_LIMIT_USD", "200"), ("MAX_KEY_LIMIT_USD", "x")]).unwrap_err();
    assert_eq!(variables(&errors), vec!["MAX_KEY_LIMIT_USD"]);
}

#[test]
fn booleans_accept_only_the_listed_words() {
    for name in ["DRY_RUN", "EXECUTION_KILL_SWITCH"] {
        let read = |value: &str| {
            let config = ok(&[(name, value)]);
            if name == "DRY_RUN" {
                config.dry_run
            } else {
                config.kill_switch
            }
        };
        for yes in ["true", "TRUE", "True", "1", "yes", "YES", "Yes"] {
            assert!(read(yes), "{name}={yes}");
        }
        for no in ["false", "FALSE", "0", "no", "No"] {
            assert!(!read(no), "{name}={no}");
        }
        // Unset or blank: the default (false), never JS-style truthiness.
        assert!(!read(""));
        for junk in [
            "on", "off", "2", "-1", "t", "y", "enabled", "false!", "truee",
        ] {
            let message = problem_with(&[(name, junk)], name);
            assert_eq!(
                message,
                format!("must be one of true, false, 1, 0, yes, no (any case), got {junk:?}")
            );
        }
    }
}

#[test]
fn enums_accept_their_words_in_any_case() {
    assert_eq!(
        ok(&[("SOLANA_NETWORK", "devnet")]).solana_network,
        SolanaNetwork::Devnet
    );
    assert_eq!(
        ok(&[("SOLANA_NETWORK", "Mainnet-Beta")]).solana_network,
        SolanaNetwork::MainnetBeta
    );
    assert_eq!(
        problem_with(&[("SOLANA_NETWORK", "testnet")], "SOLANA_NETWORK"),
        "must be one of mainnet-beta, devnet, got \"testnet\""
    );
    assert_eq!(
        ok(&[("FEE_SOURCE", "PARTNER_FEES")]).fee_source,
        FeeSource::PartnerFees
    );
    problem_with(&[("FEE_SOURCE", "ALL")], "FEE_SOURCE");
    for (word, expected) in [
        ("daily", Some(LimitReset::Daily)),
        ("WEEKLY", Some(LimitReset::Weekly)),
        ("monthly", Some(LimitReset::Monthly)),
        ("null", None),
        ("NULL", None),
    ] {
        assert_eq!(
            ok(&[("KEY_LIMIT_RESET", word)]).key_limit_reset,
            expected,
            "{word}"
        );
    }
    let message = problem_with(&[("KEY_LIMIT_RESET", "never")], "KEY_LIMIT_RESET");
    assert!(
        message.contains("daily, weekly, monthly, null"),
        "{message}"
    );
    for mode in DistributionMode::ALL {
        assert_eq!(
            ok(&[("DISTRIBUTION_MODE", mode.as_str())]).distribution_mode,
            *mode
        );
    }
    assert_eq!(
        ok(&[("DISTRIBUTION_MODE", "equal_split")]).distribution_mode,
        DistributionMode::EqualSplit
    );
    problem_with(&[("DISTRIBUTION_MODE", "TOP_N")], "DISTRIBUTION_MODE");
    for (word, level) in [
        ("debug", LogLevel::Debug),
        ("info", LogLevel::Info),
        ("WARN", LogLevel::Warn),
        ("error", LogLevel::Error),
    ] {
        let config = ok(&[("LOG_LEVEL", word)]);
        assert_eq!(config.log_level, level);
        assert_eq!(config.log_level.as_str(), word.to_ascii_lowercase());
    }
    problem_with(&[("LOG_LEVEL", "trace")], "LOG_LEVEL");
    assert_eq!(
        ok(&[("NODE_ENV", "production")]).node_env,
        NodeEnv::Production
    );
    assert_eq!(ok(&[("NODE_ENV", "test")]).node_env, NodeEnv::Test);
    problem_with(&[("NODE_ENV", "staging")], "NODE_ENV");
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut vars = base();
    vars.remove("HELIUS_API_KEY");
    for (name, value) in [
        ("PORT", "99999"),
        ("DRY_RUN", "on"),
        ("SWAP_SLIPPAGE_BPS", "abc"),
        ("DEFAULT_KEY_LIMIT_USD", "10.555"),
        ("LOG_LEVEL", "loud"),
        ("CRON_EXPRESSION", "*/5 * * * *"),
        ("HOST", "localhost"),
        ("SIGNER_KEYPAIR_PATH", "/etc/id.json"),
        ("UNKNOWN_VARIABLE", "ignored"),
    ] {
        vars.insert(name.to_owned(), value.to_owned());
    }
    let errors = Config::from_vars(&vars).unwrap_err();
    let mut named = variables(&errors);
    named.sort_unstable();
    let mut expected = vec![
        "HELIUS_API_KEY",
        "PORT",
        "DRY_RUN",
        "SWAP_SLIPPAGE_BPS",
        "DEFAULT_KEY_LIMIT_USD",
        "LOG_LEVEL",
        "CRON_EXPRESSION",
        "HOST",
        SIGNER_VARIABLES,
    ];
    expected.sort_unstable();
    assert_eq!(named, expected, "{errors}");
    let shown = errors.to_string();
    assert!(
        shown.starts_with("invalid configuration: 9 problem(s)\n  "),
        "{shown}"
    );
    assert!(
        shown.contains("\n  DRY_RUN: must be one of true, false"),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 10);
    let _: &dyn std::error::Error = &errors;
}

#[test]
fn signer_needs_exactly_one_valid_source() {
    let keypair = Keypair::new();
    let mut neither = base();
    neither.remove("SIGNER_PRIVATE_KEY");
    let errors = Config::from_vars(&neither).unwrap_err();
    assert_eq!(variables(&errors), vec![SIGNER_VARIABLES]);
    let message = &errors.problems[0].message;
    assert!(
        message.contains("SIGNER_KEYPAIR_PATH") && message.contains("SIGNER_PRIVATE_KEY"),
        "{message}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("id.json");
    std::fs::write(
        &file,
        serde_json::to_string(&keypair.to_bytes().to_vec()).unwrap(),
    )
    .unwrap();
    let file_text = file.to_str().unwrap();

    let both = problem_with(&[("SIGNER_KEYPAIR_PATH", file_text)], SIGNER_VARIABLES);
    assert!(both.contains("both"), "{both}");

    let from_file = Config::from_vars(&{
        let mut vars = neither.clone();
        vars.insert("SIGNER_KEYPAIR_PATH".into(), file_text.into());
        vars
    })
    .unwrap();
    assert_eq!(from_file.signer, SignerSource::KeypairPath(file.clone()));
    assert_eq!(from_file.signer_pubkey, keypair.pubkey());
    assert_eq!(
        from_file.signer.keypair().unwrap().pubkey(),
        keypair.pubkey()
    );

    let base58 = ok(&[("SIGNER_PRIVATE_KEY", &keypair.to_base58_string())]);
    assert_eq!(base58.signer_pubkey, keypair.pubkey());
    let json = serde_json::to_string(&keypair.to_bytes().to_vec()).unwrap();
    let from_json = ok(&[("SIGNER_PRIVATE_KEY", &json)]);
    assert_eq!(from_json.signer_pubkey, keypair.pubkey());

    // Invalid keys: named variable, no key material in the message.
    let mut mismatched = keypair.to_bytes();
    mismatched[32..].copy_from_slice(&Keypair::new().pubkey().to_bytes());
    let mismatched = bs58::encode(mismatched).into_string();
    let short = bs58::encode(&keypair.to_bytes()[..32]).into_string();
    for bad in [
        mismatched.as_str(),
        short.as_str(),
        "not-base58-0OIl",
        "[1,2,3]",
    ] {
        let message = problem_with(&[("SIGNER_PRIVATE_KEY", bad)], "SIGNER_PRIVATE_KEY");
        assert!(!message.contains(bad), "{message}");
    }
    assert!(
        problem_with(&[("SIGNER_PRIVATE_KEY", &mismatched)], "SIGNER_PRIVATE_KEY")
            .contains("public half does not match")
    );

    let with_path = |path: &str| {
        let mut vars = neither.clone();
        vars.insert("SIGNER_KEYPAIR_PATH".into(), path.into());
        Config::from_vars(&vars).unwrap_err()
    };
    let missing = with_path(dir.path().join("missing.json").to_str().unwrap());
    assert_eq!(variables(&missing), vec!["SIGNER_KEYPAIR_PATH"]);
    assert!(
        missing.problems[0]
            .message
            .contains("cannot read keypair file")
    );
    std::fs::write(&file, "{\"not\": \"a keypair\"}").unwrap();
    let garbage = with_path(file_text);
    assert_eq!(variables(&garbage), vec!["SIGNER_KEYPAIR_PATH"]);
    assert!(garbage.problems[0].message.contains("JSON array of 64"));
    let tilde = with_path("~/.config/solana/id.json");
    assert!(tilde.problems[0].message.contains("full path"), "{tilde}");
}

/// Values for every secret, each distinctive, and a configuration using all of them.
fn all_secrets() -> (Config, Vec<String>) {
    let signer = Keypair::new().to_base58_string();
    let evm = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
    let encryption = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9f";
    let jwt = "eyJhbGciOiJIUzI1NiJ9.SECRET-jwt.sig";
    let rpc = "https://rpc.example.com/SECRET-path-token/?key=SECRET-query";
    let config = ok(&[
        ("SIGNER_PRIVATE_KEY", &signer),
        ("EVM_PRIVATE_KEY", evm),
        ("KEY_ENCRYPTION_KEY", encryption),
        ("BAGS_AGENT_JWT", jwt),
        ("SOLANA_RPC_URL", rpc),
    ]);
    let secrets = [
        BAGS, HELIUS, OPENROUTER, TOKEN, &signer, evm, encryption, jwt,
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(["SECRET-path-token".to_owned(), "SECRET-query".to_owned()])
    .collect();
    (config, secrets)
}

#[test]
fn describe_lists_every_variable_and_no_secret() {
    let (config, secrets) = all_secrets();
    let rows = config.describe();
    let names: Vec<&str> = rows.iter().map(|row| row.name).collect();
    assert_eq!(names, VARIABLES);
    let rendered = format!("{rows:?}");
    for secret in &secrets {
        assert!(
            !rendered.contains(secret.as_str()),
            "{secret} leaked: {rendered}"
        );
    }
    assert!(!rendered.contains("SECRET"), "{rendered}");
    assert!(!rendered.contains("(unknown variable)"), "{rendered}");
    let value = |name: &str| rows.iter().find(|r| r.name == name).unwrap().value.clone();
    for name in [
        "BAGS_API_KEY",
        "EVM_PRIVATE_KEY",
        "BAGS_AGENT_JWT",
        "KEY_ENCRYPTION_KEY",
    ] {
        assert_eq!(value(name), "<redacted>");
    }
    assert!(value("SIGNER_PRIVATE_KEY").starts_with("<redacted> (pubkey "));
    assert_eq!(value("SIGNER_KEYPAIR_PATH"), "(not set)");
    assert_eq!(
        value("HELIUS_RPC_URL"),
        "https://mainnet.helius-rpc.com/<redacted>"
    );
    assert_eq!(
        value("SOLANA_RPC_URL"),
        "https://rpc.example.com/<redacted>"
    );
    assert_eq!(value("KEY_LIMIT_RESET"), "monthly");
    assert_eq!(value("DATABASE_URL"), "(not set)");
    assert_eq!(value("DISTRIBUTION_TOKEN_MINT"), "(not set)");

    let unset = ok(&[]).describe();
    let value = |name: &str| unset.iter().find(|r| r.name == name).unwrap().value.clone();
    assert_eq!(value("EVM_PRIVATE_KEY"), "(not set)");
    assert_eq!(value("BAGS_AGENT_JWT"), "(not set)");
    assert_eq!(value("KEY_ENCRYPTION_KEY"), "(not set)");
    assert_eq!(value("HOST"), "0.0.0.0");
    assert_eq!(value("PORT"), "3001");
    assert_eq!(value("CRON_EXPRESSION"), "0 */6 * * *");
    assert_eq!(value("USAGE_POLL_INTERVAL_MIN"), "15");
    assert_eq!(value("NODE_ENV"), "development (no effect)");
}

#[test]
fn debug_output_never_shows_a_secret() {
    let (config, secrets) = all_secrets();
    let shown = format!("{config:?} {:#?}", config.clone());
    for secret in &secrets {
        assert!(!shown.contains(secret.as_str()), "{secret} leaked");
    }
    assert!(!shown.contains("SECRET"));
    assert!(shown.contains("Secret(***)"));
    assert!(shown.contains("EncryptionKey(***)"));
    assert!(shown.contains("PrivateKey(***)"));
}

#[test]
fn invalid_secrets_are_not_echoed_in_problems() {
    let marker = "SECRETMARKER";
    let errors = with(&[
        ("EVM_PRIVATE_KEY", "0xSECRETMARKER"),
        ("KEY_ENCRYPTION_KEY", "SECRETMARKER=="),
        ("SIGNER_PRIVATE_KEY", "SECRETMARKER0OIl"),
        (
            "HELIUS_RPC_URL",
            "ftp://rpc.example.com/?api-key=SECRETMARKER",
        ),
        ("SOLANA_RPC_URL", "SECRETMARKER"),
        (
            "DATABASE_URL",
            "postgres://user:SECRETMARKER@db/creditbrain",
        ),
    ])
    .unwrap_err();
    assert_eq!(errors.problems.len(), 6, "{errors}");
    let shown = format!("{errors} {errors:?}");
    assert!(!shown.contains(marker), "{shown}");
}

#[test]
fn evm_private_key_must_be_a_usable_secp256k1_key() {
    let key = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
    assert_eq!(
        ok(&[("EVM_PRIVATE_KEY", key)])
            .evm_private_key
            .unwrap()
            .expose(),
        key
    );
    let prefixed = format!("0x{key}");
    assert!(
        ok(&[("EVM_PRIVATE_KEY", &prefixed)])
            .evm_private_key
            .is_some()
    );
    let order = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
    let below_order = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140";
    ok(&[("EVM_PRIVATE_KEY", below_order)]);
    for bad in [
        &key[..63],
        "zz",
        order,
        &"0".repeat(64),
        &format!("{key}00"),
    ] {
        problem_with(&[("EVM_PRIVATE_KEY", bad)], "EVM_PRIVATE_KEY");
    }
}

#[test]
fn key_encryption_key_is_32_bytes_in_hex_or_base64() {
    let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let expected: [u8; 32] = std::array::from_fn(|i| i as u8);
    let config = ok(&[("KEY_ENCRYPTION_KEY", hex)]);
    assert_eq!(config.key_encryption_key.unwrap().expose(), &expected);
    let base64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let config = ok(&[("KEY_ENCRYPTION_KEY", base64)]);
    assert_eq!(config.key_encryption_key.unwrap().expose(), &expected);
    for bad in [
        "short",
        &hex[..62],
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",
        &"0".repeat(64),
    ] {
        problem_with(&[("KEY_ENCRYPTION_KEY", bad)], "KEY_ENCRYPTION_KEY");
    }
}

#[test]
fn cron_expression_is_classic_and_respects_the_minimum_interval() {
    let config = ok(&[("CRON_EXPRESSION", "0 9 * * 1")]);
    assert_eq!(
        config.cron_schedule.crate_expressions(),
        vec!["0 0 9 * * 2"]
    );
    ok(&[
        ("CRON_EXPRESSION", "0 * * * *"),
        ("MIN_CRON_INTERVAL_HOURS", "1"),
    ]);
    ok(&[
        ("CRON_EXPRESSION", "0 */6 * * *"),
        ("MIN_CRON_INTERVAL_HOURS", "6"),
    ]);
    ok(&[
        ("CRON_EXPRESSION", "0 0 * * *"),
        ("MIN_CRON_INTERVAL_HOURS", "24"),
    ]);

    let message = problem_with(
        &[
            ("CRON_EXPRESSION", "*/30 * * * *"),
            ("MIN_CRON_INTERVAL_HOURS", "1"),
        ],
        "CRON_EXPRESSION",
    );
    assert!(message.contains("30 min apart"), "{message}");
    assert!(message.contains("MIN_CRON_INTERVAL_HOURS=1"), "{message}");
    let message = problem_with(&[("MIN_CRON_INTERVAL_HOURS", "7")], "CRON_EXPRESSION");
    assert!(message.contains("6 h apart"), "{message}");
    problem_with(&[("CRON_EXPRESSION", "* * * * *")], "CRON_EXPRESSION");
    problem_with(&[("CRON_EXPRESSION", "0,30 0 * * *")], "CRON_EXPRESSION");
    // Exactly the minimum is allowed.
    ok(&[("CRON_EXPRESSION", "0 0,1 * * *")]);

    for bad in [
        "0 0 */6 * * *",
        "61 * * * *",
        "@daily",
        "0 0 31 2 *",
        "0 0 * * 8",
        "often",
    ] {
        let message = problem_with(&[("CRON_EXPRESSION", bad)], "CRON_EXPRESSION");
        assert!(message.ends_with(&format!("got {bad:?}")), "{message}");
    }
    // A bad minimum is reported once, on its own variable, without a second cron complaint.
    let errors = with(&[
        ("CRON_EXPRESSION", "* * * * *"),
        ("MIN_CRON_INTERVAL_HOURS", "0"),
    ])
    .unwrap_err();
    assert_eq!(variables(&errors), vec!["MIN_CRON_INTERVAL_HOURS"]);
}

#[test]
fn database_url_names_a_sqlite_file_or_is_refused() {
    let config = ok(&[
        ("DATABASE_URL", "sqlite://data/other.db"),
        ("DATABASE_PATH", "ignored.db"),
    ]);
    assert_eq!(config.database_path, PathBuf::from("data/other.db"));
    assert_eq!(
        config.database_url.as_deref(),
        Some("sqlite://data/other.db")
    );
    let row = config
        .describe()
        .into_iter()
        .find(|r| r.name == "DATABASE_PATH")
        .unwrap();
    assert_eq!(row.value, "data/other.db (from DATABASE_URL)");
    assert_eq!(
        ok(&[("DATABASE_URL", "sqlite:///var/lib/cb.db")]).database_path,
        PathBuf::from("/var/lib/cb.db")
    );
    assert_eq!(
        ok(&[("DATABASE_URL", "sqlite:cb.db")]).database_path,
        PathBuf::from("cb.db")
    );
    assert_eq!(
        ok(&[("DATABASE_PATH", "/tmp/x/cb.db")]).database_path,
        PathBuf::from("/tmp/x/cb.db")
    );
    for postgres in [
        "postgres://u:p@h/db",
        "postgresql://h/db",
        "POSTGRES://h/db",
    ] {
        assert_eq!(
            problem_with(&[("DATABASE_URL", postgres)], "DATABASE_URL"),
            "Postgres is not supported yet; unset DATABASE_URL to use SQLite at DATABASE_PATH"
        );
    }
    for bad in [
        "mysql://h/db",
        "data.db",
        "sqlite:",
        "sqlite::memory:",
        "sqlite://x.db?mode=rwc",
    ] {
        problem_with(&[("DATABASE_URL", bad)], "DATABASE_URL");
    }
    problem_with(&[("DATABASE_PATH", "~/cb.db")], "DATABASE_PATH");
}

#[test]
fn admin_socket_path_fits_in_sun_path() {
    let longest = format!("/tmp/{}", "s".repeat(MAX_SOCKET_PATH_BYTES - 5));
    assert_eq!(longest.len(), 107);
    assert_eq!(
        ok(&[("ADMIN_SOCKET_PATH", &longest)]).admin_socket_path,
        PathBuf::from(&longest)
    );
    let too_long = format!("{longest}x");
    let message = problem_with(&[("ADMIN_SOCKET_PATH", &too_long)], "ADMIN_SOCKET_PATH");
    assert!(
        message.contains("108 bytes") && message.contains("at most 107"),
        "{message}"
    );
    // Bytes, not characters: 54 two-byte characters are 108 bytes.
    let wide = "é".repeat(54);
    problem_with(&[("ADMIN_SOCKET_PATH", &wide)], "ADMIN_SOCKET_PATH");
    problem_with(&[("ADMIN_SOCKET_PATH", "~/cb.sock")], "ADMIN_SOCKET_PATH");
}

#[test]
fn host_is_an_ip_address() {
    assert_eq!(
        ok(&[("HOST", "127.0.0.1")]).host,
        IpAddr::from([127, 0, 0, 1])
    );
    assert_eq!(
        ok(&[("HOST", "::1")]).host,
        "::1".parse::<IpAddr>().unwrap()
    );
    assert_eq!(ok(&[("HOST", "::")]).host, "::".parse::<IpAddr>().unwrap());
    for bad in ["localhost", "1.2.3", "256.0.0.1", "0.0.0.0:3001"] {
        let message = problem_with(&[("HOST", bad)], "HOST");
        assert!(message.contains("IP address"), "{message}");
    }
}

#[test]
fn urls_are_http_and_base_urls_lose_their_trailing_slash() {
    let config = ok(&[
        ("OPENROUTER_BASE_URL", "http://127.0.0.1:9000/api/v1/"),
        ("BAGS_API_BASE_URL", "http://127.0.0.1:9001"),
    ]);
    assert_eq!(config.openrouter_base_url, "http://127.0.0.1:9000/api/v1");
    assert_eq!(config.bags_api_base_url, "http://127.0.0.1:9001");
    for name in ["OPENROUTER_BASE_URL", "BAGS_API_BASE_URL"] {
        for bad in [
            "ftp://example.com",
            "example.com/api",
            "https://x.io/api?k=v",
            "https://",
        ] {
            problem_with(&[(name, bad)], name);
        }
    }
    for name in ["HELIUS_RPC_URL", "SOLANA_RPC_URL"] {
        for bad in ["ws://rpc.example.com", "rpc.example.com"] {
            problem_with(&[(name, bad)], name);
        }
    }
}

#[test]
fn rpc_urls_follow_the_network_and_overrides() {
    let devnet = ok(&[("SOLANA_NETWORK", "devnet")]);
    assert_eq!(
        devnet.helius_rpc_url.expose(),
        format!("https://devnet.helius-rpc.com/?api-key={HELIUS}")
    );
    assert_eq!(devnet.solana_rpc_url, devnet.helius_rpc_url);

    let helius = "http://127.0.0.1:8899/?api-key=local";
    let overridden = ok(&[("HELIUS_RPC_URL", helius)]);
    assert_eq!(overridden.helius_rpc_url.expose(), helius);
    assert_eq!(overridden.solana_rpc_url.expose(), helius);

    let solana = "http://127.0.0.1:8898";
    let split = ok(&[("SOLANA_RPC_URL", solana)]);
    assert_eq!(split.solana_rpc_url.expose(), solana);
    assert!(
        split
            .helius_rpc_url
            .expose()
            .starts_with("https://mainnet.helius-rpc.com/")
    );
    let row = split
        .describe()
        .into_iter()
        .find(|r| r.name == "SOLANA_RPC_URL")
        .unwrap();
    assert_eq!(row.value, solana);
}

#[test]
fn solana_addresses_are_base58_pubkeys() {
    let mint = Keypair::new().pubkey();
    let config = ok(&[
        ("DISTRIBUTION_TOKEN_MINT", &mint.to_string()),
        ("BAGS_AGENT_WALLET_ADDRESS", &mint.to_string()),
        ("BAGS_AGENT_USERNAME", "agent"),
    ]);
    assert_eq!(config.distribution_token_mint, Some(mint));
    assert_eq!(config.bags_agent_wallet_address, Some(mint));
    assert_eq!(config.bags_agent_username.as_deref(), Some("agent"));
    for name in ["DISTRIBUTION_TOKEN_MINT", "BAGS_AGENT_WALLET_ADDRESS"] {
        for bad in [
            "abc",
            "0OIl0OIl0OIl0OIl0OIl0OIl0OIl0OIl",
            "<spl_token_mint>",
            &format!("{mint}1"),
        ] {
            let message = problem_with(&[(name, bad)], name);
            assert!(message.contains("base58 Solana address"), "{message}");
        }
    }
}

#[test]
fn unknown_variables_are_ignored() {
    let config = ok(&[
        ("RUST_LOG", "trace"),
        ("CORS_ORIGINS", "*"),
        ("USE_JITO_BUNDLES", "false"),
    ]);
    assert!(config.describe().iter().all(|row| row.name != "RUST_LOG"));
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn environment_wins_over_dotenv_which_wins_over_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Keypair::new().to_base58_string();
    let dotenv = write(
        dir.path(),
        ".env",
        &format!(
            "\u{feff}# comment\nBAGS_API_KEY=from-file\nHELIUS_API_KEY='{HELIUS}'\n\
             export OPENROUTER_MANAGEMENT_KEY=\"{OPENROUTER}\"\nAPI_AUTH_TOKEN={TOKEN}\n\
             SIGNER_PRIVATE_KEY={signer}\nPORT=4000\nDRY_RUN=true\nLOG_LEVEL=debug\nUNRELATED=1\n"
        ),
    );
    let env: BTreeMap<String, String> = [
        ("BAGS_API_KEY", "from-env"),
        ("PORT", "5000"),
        ("DRY_RUN", ""),
        ("PATH", "/usr/bin"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = Config::from_sources(&env, Some(&dotenv)).unwrap();
    assert_eq!(config.bags_api_key.expose(), "from-env");
    assert_eq!(config.helius_api_key.expose(), HELIUS);
    assert_eq!(config.openrouter_management_key.expose(), OPENROUTER);
    assert_eq!(config.port, 5000);
    // Blank in the environment counts as unset there, so the file's value applies.
    assert!(config.dry_run);
    assert_eq!(config.log_level, LogLevel::Debug);
    let rows = config.describe();
    let source = |name: &str| rows.iter().find(|r| r.name == name).unwrap().source;
    assert_eq!(source("BAGS_API_KEY"), ValueSource::Env);
    assert_eq!(source("PORT"), ValueSource::Env);
    assert_eq!(source("HELIUS_API_KEY"), ValueSource::DotEnv);
    assert_eq!(source("DRY_RUN"), ValueSource::DotEnv);
    assert_eq!(source("LOG_LEVEL"), ValueSource::DotEnv);
    assert_eq!(source("HOST"), ValueSource::Default);
    assert_eq!(source("HELIUS_RPC_URL"), ValueSource::Default);
    assert_eq!(
        [ValueSource::Env, ValueSource::DotEnv, ValueSource::Default].map(|s| s.as_str()),
        ["env", ".env", "default"]
    );

    // No file at all is fine; the environment alone must then be complete.
    let missing = dir.path().join("absent.env");
    let errors = Config::from_sources(&env, Some(&missing)).unwrap_err();
    assert!(variables(&errors).contains(&"HELIUS_API_KEY"), "{errors}");
    assert!(Config::from_sources(&base(), Some(&missing)).is_ok());
    assert!(Config::from_sources(&base(), None).is_ok());
}

#[test]
fn dotenv_problems_are_reported_without_values() {
    let dir = tempfile::tempdir().unwrap();
    let dotenv = write(
        dir.path(),
        ".env",
        "PORT=4000\nDRY_RUN=yes\nPORT=4001\nPORT=4002\nAPI_AUTH_TOKEN='unterminated SECRETMARKER\n",
    );
    let errors = Config::from_sources(&base(), Some(&dotenv)).unwrap_err();
    let shown = errors.to_string();
    assert!(!shown.contains("SECRETMARKER"), "{shown}");
    assert!(
        errors
            .problems
            .iter()
            .any(|p| p.variable == "PORT" && p.message.contains("more than once")),
        "{shown}"
    );
    assert!(
        errors.problems.iter().any(|p| p.variable.ends_with(".env")
            && p.message.contains("cannot parse line 5")
            && p.message.contains("API_AUTH_TOKEN")),
        "{shown}"
    );
    // Duplicates are reported once per variable.
    assert_eq!(shown.matches("more than once").count(), 1, "{shown}");
}

#[test]
fn socket_path_reads_only_its_own_variable() {
    let dir = tempfile::tempdir().unwrap();
    let dotenv = write(
        dir.path(),
        ".env",
        "ADMIN_SOCKET_PATH=/run/cb/from-file.sock\nPORT=nonsense\n",
    );
    let absent = dir.path().join("absent.env");
    assert_eq!(
        socket_path_from_sources(Some("/run/cb/env.sock".into()), Some(&dotenv)),
        PathBuf::from("/run/cb/env.sock")
    );
    assert_eq!(
        socket_path_from_sources(Some("  ".into()), Some(&dotenv)),
        PathBuf::from("/run/cb/from-file.sock")
    );
    assert_eq!(
        socket_path_from_sources(None, Some(&dotenv)),
        PathBuf::from("/run/cb/from-file.sock")
    );
    assert_eq!(
        socket_path_from_sources(None, Some(&absent)),
        PathBuf::from("./data/creditbrain.sock")
    );
    assert_eq!(
        socket_path_from_sources(None, None),
        PathBuf::from("./data/creditbrain.sock")
    );
}

/// The shipped example documents every variable, parses, and is valid once the four secrets and
/// a signer are filled in (which it leaves blank, so `config check` lists exactly those).
#[test]
fn example_env_file_is_complete_and_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/creditbrain.env.example");
    let text = std::fs::read_to_string(&path).unwrap();
    for name in VARIABLES {
        let documented = text.lines().any(|line| {
            let line = line.trim_start_matches('#').trim_start();
            line.starts_with(&format!("{name}="))
        });
        assert!(documented, "{name} is missing from {}", path.display());
    }
    let (vars, problems) = read_dotenv(&path);
    assert!(problems.is_empty(), "{problems:?}");
    let errors = Config::from_vars(&vars).unwrap_err();
    assert_eq!(
        variables(&errors),
        vec![
            "BAGS_API_KEY",
            "HELIUS_API_KEY",
            "OPENROUTER_MANAGEMENT_KEY",
            "API_AUTH_TOKEN",
            SIGNER_VARIABLES,
        ],
        "{errors}"
    );
    let mut filled = vars.clone();
    filled.extend(base());
    let config = Config::from_vars(&filled).unwrap();
    // The example's values are the defaults (the signer differs: each `base()` makes a new one).
    let values = |config: &Config| -> Vec<(&'static str, String)> {
        config
            .describe()
            .into_iter()
            .filter(|row| !row.name.starts_with("SIGNER_"))
            .map(|row| (row.name, row.value))
            .collect()
    };
    assert_eq!(values(&config), values(&ok(&[])));
}

#[test]
fn cors_origins_are_exact_origins() {
    assert!(ok(&[]).cors_allowed_origins.is_empty());
    let config = ok(&[(
        "CORS_ALLOWED_ORIGINS",
        "https://dash.example.com, http://localhost:5173",
    )]);
    assert_eq!(
        config.cors_allowed_origins,
        vec!["https://dash.example.com", "http://localhost:5173"]
    );
    for bad in [
        "https://dash.example.com/",
        "https://dash.example.com/app",
        "dash.example.com",
        "ftp://dash.example.com",
        "*",
    ] {
        let message = problem_with(&[("CORS_ALLOWED_ORIGINS", bad)], "CORS_ALLOWED_ORIGINS");
        assert!(
            message.ends_with(&format!("got {bad:?}")),
            "{bad}: {message}"
        );
    }
}

/// RUNBOOK.md's environment table names every variable the daemon reads, so it cannot fall
/// behind the code.
#[test]
fn the_runbook_table_lists_every_variable() {
    let runbook = include_str!("../../RUNBOOK.md");
    for name in VARIABLES {
        assert!(
            runbook.contains(&format!("| `{name}` |")),
            "RUNBOOK.md's environment table lacks {name}"
        );
    }
}
