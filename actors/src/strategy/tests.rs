//! Unit tests of strategy validation: defaults, exact amounts, every problem reported at once,
//! cross-field rules, patch semantics (only given fields, immutable identity), JSON input.

use super::*;

const OWNER: &str = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU";
const MINT: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
const HOLDER_A: &str = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";
const HOLDER_B: &str = "HN7cABqLq46Es1jh92dQQisAq662SmxELLLsHHe4YWrH";
const OTHER: &str = "So11111111111111111111111111111111111111112";

fn key(text: &str) -> Pubkey {
    text.parse().unwrap()
}

fn usd(dollars: i64) -> i64 {
    dollars * MICRO_USD_PER_USD
}

fn defaults() -> StrategyDefaults {
    StrategyDefaults {
        token_mint: Some(key(MINT)),
        fee_source: FeeSource::ClaimablePositions,
        threshold_lamports: 5 * LAMPORTS_PER_SOL,
        slippage_bps: 50,
        distribution_mode: DistributionMode::TopNHolders,
        top_n: 100,
        max_grant_micro_usd: usd(10),
        max_key_limit_micro_usd: usd(100),
        key_limit_reset: Some(LimitReset::Monthly),
        key_expiry_days: 365,
        reserve_bps: 1000,
        cron_schedule: CronSchedule::parse("0 */6 * * *").unwrap(),
        min_cron_interval_hours: 1,
    }
}

fn owner_only() -> StrategyInput {
    StrategyInput {
        owner_wallet: Some(OWNER.to_owned()),
        ..StrategyInput::default()
    }
}

fn some(text: &str) -> Option<String> {
    Some(text.to_owned())
}

fn weight(wallet: &str, weight: &str) -> CustomWeightInput {
    CustomWeightInput {
        wallet: some(wallet),
        weight: some(weight),
    }
}

fn problem_fields(errors: &StrategyErrors) -> Vec<&str> {
    errors.fields()
}

#[test]
fn absent_fields_take_the_environment_defaults() {
    let spec = StrategySpec::from_input(&owner_only(), &defaults()).unwrap();
    let d = defaults();
    assert_eq!(
        spec,
        StrategySpec {
            owner_wallet: key(OWNER),
            token_mint: key(MINT),
            fee_source: d.fee_source,
            threshold_lamports: d.threshold_lamports,
            slippage_bps: d.slippage_bps,
            distribution_mode: d.distribution_mode,
            top_n: d.top_n,
            custom_weights: vec![],
            exclusions: vec![],
            min_holding_base_units: 0,
            max_grant_micro_usd: d.max_grant_micro_usd,
            max_key_limit_micro_usd: d.max_key_limit_micro_usd,
            key_limit_reset: d.key_limit_reset,
            key_expiry_days: d.key_expiry_days,
            reserve_bps: d.reserve_bps,
            schedule: d.cron_schedule,
            status: StrategyStatus::Active,
        }
    );
}

#[test]
fn given_fields_are_parsed_exactly_into_integer_units() {
    let input = StrategyInput {
        owner_wallet: some(OWNER),
        token_mint: some(OTHER),
        fee_source: some("partner_fees"),
        threshold_sol: some("1.000000001"),
        slippage_bps: some("1000"),
        distribution_mode: some("CUSTOM_LIST"),
        top_n: some("7"),
        custom_weights: Some(vec![
            weight(HOLDER_B, "3"),
            weight(HOLDER_A, "9223372036854775807"),
        ]),
        exclusions: Some(vec![OTHER.to_owned(), HOLDER_A.to_owned()]),
        min_holding_base_units: some("18446744073709551615"),
        max_grant_usd: some("12.34"),
        max_key_limit_usd: some("10000"),
        key_limit_reset: some("null"),
        key_expiry_days: some("0"),
        reserve_pct: some("12.5"),
        schedule: some("30   9 * * 1"),
        status: some("Paused"),
    };
    let spec = StrategySpec::from_input(&input, &defaults()).unwrap();
    assert_eq!(spec.token_mint, key(OTHER));
    assert_eq!(spec.fee_source, FeeSource::PartnerFees);
    assert_eq!(spec.threshold_lamports, 1_000_000_001);
    assert_eq!(spec.slippage_bps, 1000);
    assert_eq!(spec.distribution_mode, DistributionMode::CustomList);
    assert_eq!(spec.top_n, 7);
    // Sorted by base58 text, the order the store reads them back in.
    assert_eq!(
        spec.custom_weights,
        vec![(key(HOLDER_A), i64::MAX.unsigned_abs()), (key(HOLDER_B), 3)]
    );
    assert_eq!(spec.exclusions, vec![key(HOLDER_A), key(OTHER)]);
    assert_eq!(spec.min_holding_base_units, u64::MAX);
    assert_eq!(spec.max_grant_micro_usd, 12_340_000);
    assert_eq!(spec.max_key_limit_micro_usd, usd(10_000));
    assert_eq!(spec.key_limit_reset, None, "null = credits mode");
    assert_eq!(spec.key_expiry_days, 0);
    assert_eq!(spec.reserve_bps, 1250);
    assert_eq!(spec.schedule.source(), "30 9 * * 1");
    assert_eq!(spec.status, StrategyStatus::Paused);
}

#[test]
fn every_problem_is_listed_together() {
    let input = StrategyInput {
        owner_wallet: some("not-base58-0OIl"),
        token_mint: some("1111"),
        fee_source: some("TIPS"),
        threshold_sol: some("0.5"),
        slippage_bps: some("1001"),
        distribution_mode: some("RANDOM"),
        top_n: some("0"),
        custom_weights: Some(vec![
            weight(HOLDER_A, "0"),
            weight("nope", "1"),
            weight(HOLDER_A, "2"),
            CustomWeightInput::default(),
        ]),
        exclusions: Some(vec![
            HOLDER_B.to_owned(),
            HOLDER_B.to_owned(),
            "x".to_owned(),
        ]),
        min_holding_base_units: some("-1"),
        max_grant_usd: some("0.99"),
        max_key_limit_usd: some("10000.01"),
        key_limit_reset: some("yearly"),
        key_expiry_days: some("36501"),
        reserve_pct: some("50.01"),
        schedule: some("*/5 * * * *"),
        status: some("stopped"),
    };
    let errors = StrategySpec::from_input(&input, &defaults()).unwrap_err();
    assert_eq!(
        problem_fields(&errors),
        [
            "ownerWallet",
            "tokenMint",
            "feeSource",
            "thresholdSol",
            "slippageBps",
            "distributionMode",
            "topN",
            "customWeights[0].weight",
            "customWeights[1].wallet",
            "customWeights[2].wallet",
            "customWeights[3].wallet",
            "customWeights[3].weight",
            "exclusions[1]",
            "exclusions[2]",
            "minHoldingBaseUnits",
            "maxGrantUsd",
            "maxKeyLimitUsd",
            "keyLimitReset",
            "keyExpiryDays",
            "reservePct",
            "schedule",
            "status",
        ],
        "{errors}"
    );
    let message = |field: &str| {
        errors
            .problems
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.clone())
            .unwrap()
    };
    assert!(message("ownerWallet").contains("base58"), "{errors}");
    assert!(
        message("customWeights[2].wallet").contains("twice"),
        "{errors}"
    );
    assert!(message("exclusions[1]").contains("twice"), "{errors}");
    assert!(message("schedule").contains("minimum interval"), "{errors}");
    assert!(
        message("thresholdSol").contains("from 1 to 100"),
        "{errors}"
    );
    assert!(message("reservePct").contains("from 0 to 50"), "{errors}");
    assert!(
        errors
            .to_string()
            .starts_with("invalid strategy: 22 problem(s)")
    );
}

#[test]
fn amounts_refuse_fractions_of_their_unit_and_floats_syntax() {
    for (input, field) in [
        (
            StrategyInput {
                max_grant_usd: some("10.001"),
                ..owner_only()
            },
            "maxGrantUsd",
        ),
        (
            StrategyInput {
                threshold_sol: some("1.0000000001"),
                ..owner_only()
            },
            "thresholdSol",
        ),
        (
            StrategyInput {
                reserve_pct: some("1.005"),
                ..owner_only()
            },
            "reservePct",
        ),
        (
            StrategyInput {
                max_grant_usd: some("1e1"),
                ..owner_only()
            },
            "maxGrantUsd",
        ),
        (
            StrategyInput {
                top_n: some("1.5"),
                ..owner_only()
            },
            "topN",
        ),
        (
            StrategyInput {
                top_n: some("4294967296"),
                ..owner_only()
            },
            "topN",
        ),
    ] {
        let errors = StrategySpec::from_input(&input, &defaults()).unwrap_err();
        assert_eq!(problem_fields(&errors), [field], "{errors}");
    }
    let errors = StrategySpec::from_input(
        &StrategyInput {
            max_grant_usd: some("10.001"),
            ..owner_only()
        },
        &defaults(),
    )
    .unwrap_err();
    assert!(errors.problems[0].1.contains("whole cents"), "{errors}");
}

#[test]
fn cross_field_rules_name_the_field_that_was_given() {
    // The grant ceiling may not exceed the key ceiling.
    let errors = StrategySpec::from_input(
        &StrategyInput {
            max_grant_usd: some("150"),
            ..owner_only()
        },
        &defaults(),
    )
    .unwrap_err();
    assert_eq!(problem_fields(&errors), ["maxGrantUsd"]);
    assert!(
        errors.problems[0].1.contains("$100.00, the default"),
        "{errors}"
    );

    let errors = StrategySpec::from_input(
        &StrategyInput {
            max_key_limit_usd: some("5"),
            ..owner_only()
        },
        &defaults(),
    )
    .unwrap_err();
    assert_eq!(problem_fields(&errors), ["maxKeyLimitUsd"], "{errors}");

    // Equal is fine.
    let spec = StrategySpec::from_input(
        &StrategyInput {
            max_grant_usd: some("100"),
            ..owner_only()
        },
        &defaults(),
    )
    .unwrap();
    assert_eq!(spec.max_grant_micro_usd, spec.max_key_limit_micro_usd);

    // CUSTOM_LIST needs a list.
    let errors = StrategySpec::from_input(
        &StrategyInput {
            distribution_mode: some("CUSTOM_LIST"),
            ..owner_only()
        },
        &defaults(),
    )
    .unwrap_err();
    assert_eq!(problem_fields(&errors), ["customWeights"]);
}

#[test]
fn owner_is_required_and_the_mint_when_no_default() {
    let mut no_mint = defaults();
    no_mint.token_mint = None;
    let errors = StrategySpec::from_input(&StrategyInput::default(), &no_mint).unwrap_err();
    assert_eq!(problem_fields(&errors), ["ownerWallet", "tokenMint"]);
    assert!(errors.problems[1].1.contains("DISTRIBUTION_TOKEN_MINT"));
}

#[test]
fn the_schedule_respects_the_minimum_interval_exactly() {
    let mut d = defaults();
    d.min_cron_interval_hours = 3;
    let every_two = StrategyInput {
        schedule: some("0 */2 * * *"),
        ..owner_only()
    };
    let errors = StrategySpec::from_input(&every_two, &d).unwrap_err();
    assert_eq!(problem_fields(&errors), ["schedule"]);
    assert!(errors.problems[0].1.contains("2 h apart"), "{errors}");
    // `0 0,3 * * *` is 3 h apart once, then 21 h: the shortest gap counts, and 3 h is enough.
    let ok = StrategyInput {
        schedule: some("0 0,3 * * *"),
        ..owner_only()
    };
    assert!(StrategySpec::from_input(&ok, &d).is_ok());
    // 5-field cron only.
    let errors = StrategySpec::from_input(
        &StrategyInput {
            schedule: some("0 0 */6 * * *"),
            ..owner_only()
        },
        &d,
    )
    .unwrap_err();
    assert_eq!(problem_fields(&errors), ["schedule"]);
}

#[test]
fn a_patch_changes_only_the_given_fields() {
    let current = StrategySpec::from_input(
        &StrategyInput {
            exclusions: Some(vec![HOLDER_A.to_owned()]),
            custom_weights: Some(vec![weight(HOLDER_B, "2")]),
            ..owner_only()
        },
        &defaults(),
    )
    .unwrap();

    let patched = current
        .apply_patch(
            &StrategyPatch {
                top_n: some("5"),
                key_limit_reset: some("null"),
                status: some("paused"),
                ..StrategyPatch::default()
            },
            1,
        )
        .unwrap();
    let mut expected = current.clone();
    expected.top_n = 5;
    expected.key_limit_reset = None;
    expected.status = StrategyStatus::Paused;
    assert_eq!(patched, expected);

    // A given list replaces the whole list; [] empties it.
    let patched = current
        .apply_patch(
            &StrategyPatch {
                exclusions: Some(vec![]),
                custom_weights: Some(vec![weight(HOLDER_A, "1")]),
                ..StrategyPatch::default()
            },
            1,
        )
        .unwrap();
    assert!(patched.exclusions.is_empty());
    assert_eq!(patched.custom_weights, vec![(key(HOLDER_A), 1)]);

    // An empty patch changes nothing.
    assert_eq!(
        current.apply_patch(&StrategyPatch::default(), 1).unwrap(),
        current
    );
}

#[test]
fn owner_and_mint_are_immutable_but_may_be_repeated() {
    let current = StrategySpec::from_input(&owner_only(), &defaults()).unwrap();
    let same = StrategyPatch {
        owner_wallet: some(OWNER),
        token_mint: some(MINT),
        ..StrategyPatch::default()
    };
    assert_eq!(current.apply_patch(&same, 1).unwrap(), current);

    let errors = current
        .apply_patch(
            &StrategyPatch {
                owner_wallet: some(HOLDER_A),
                token_mint: some(OTHER),
                ..StrategyPatch::default()
            },
            1,
        )
        .unwrap_err();
    assert_eq!(problem_fields(&errors), ["ownerWallet", "tokenMint"]);
    assert!(errors.problems[0].1.contains("immutable"), "{errors}");
}

#[test]
fn a_patch_is_validated_as_a_whole_and_lists_every_problem() {
    let current = StrategySpec::from_input(
        &StrategyInput {
            max_grant_usd: some("50"),
            ..owner_only()
        },
        &defaults(),
    )
    .unwrap();
    let errors = current
        .apply_patch(
            &StrategyPatch {
                // Below the current grant ceiling: reported on the field that was given.
                max_key_limit_usd: some("20"),
                slippage_bps: some("abc"),
                distribution_mode: some("CUSTOM_LIST"),
                schedule: some("*/10 * * * *"),
                ..StrategyPatch::default()
            },
            1,
        )
        .unwrap_err();
    assert_eq!(
        problem_fields(&errors),
        ["slippageBps", "schedule", "maxKeyLimitUsd", "customWeights"],
        "{errors}"
    );
    assert!(
        errors.problems[2].1.contains("the current value"),
        "{errors}"
    );
}

#[test]
fn json_input_accepts_numbers_and_null_means_credits_mode() {
    let input: StrategyInput = serde_json::from_value(serde_json::json!({
        "ownerWallet": OWNER,
        "thresholdSol": 2.5,
        "topN": 10,
        "maxGrantUsd": "12.50",
        "keyLimitReset": null,
        "customWeights": [{"wallet": HOLDER_A, "weight": 4}],
        "exclusions": [HOLDER_B],
    }))
    .unwrap();
    assert_eq!(input.key_limit_reset.as_deref(), Some("null"));
    let spec = StrategySpec::from_input(&input, &defaults()).unwrap();
    assert_eq!(spec.threshold_lamports, 2_500_000_000);
    assert_eq!(spec.top_n, 10);
    assert_eq!(spec.max_grant_micro_usd, 12_500_000);
    assert_eq!(spec.key_limit_reset, None);
    assert_eq!(spec.custom_weights, vec![(key(HOLDER_A), 4)]);
    assert_eq!(spec.exclusions, vec![key(HOLDER_B)]);

    // Absent is not null: the default applies.
    let input: StrategyInput =
        serde_json::from_value(serde_json::json!({"ownerWallet": OWNER})).unwrap();
    assert_eq!(input.key_limit_reset, None);
    // A negative number reaches validation (and is reported there), not a serde error.
    let input: StrategyInput =
        serde_json::from_value(serde_json::json!({"ownerWallet": OWNER, "topN": -1})).unwrap();
    let errors = StrategySpec::from_input(&input, &defaults()).unwrap_err();
    assert_eq!(problem_fields(&errors), ["topN"]);
    // A typo is refused rather than silently ignored.
    assert!(
        serde_json::from_value::<StrategyInput>(serde_json::json!({"maxGrantUSD": "1"})).is_err()
    );
}

#[test]
fn the_spec_renders_as_json_in_stored_units() {
    let spec = StrategySpec::from_input(
        &StrategyInput {
            custom_weights: Some(vec![weight(HOLDER_A, "2")]),
            min_holding_base_units: some("18446744073709551615"),
            ..owner_only()
        },
        &defaults(),
    )
    .unwrap();
    let json = spec.to_json();
    assert_eq!(json["ownerWallet"], OWNER);
    assert_eq!(json["thresholdLamports"], 5 * LAMPORTS_PER_SOL);
    assert_eq!(json["maxGrantMicroUsd"], usd(10));
    assert_eq!(json["minHoldingBaseUnits"], "18446744073709551615");
    assert_eq!(json["keyLimitReset"], "monthly");
    assert_eq!(json["customWeights"][0]["wallet"], HOLDER_A);
    assert_eq!(json["schedule"], "0 */6 * * *");
    assert_eq!(format_usd(12_340_000), "$12.34");
}
