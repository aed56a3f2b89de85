//! The sandbox's seeded world: the signer (who is also the fee owner), fee positions on Bags, a
//! token with a realistic holder set, the USDC pool and the OpenRouter account.
//!
//! The holder set is deliberately untidy so the daemon's filters are exercised: several token
//! accounts per owner, empty accounts, program-derived (off-curve) owners such as a bonding curve
//! vault, and the incinerator. Amounts come from a seeded generator, so a given seed always
//! builds the same distribution.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use solana_sdk::pubkey::Pubkey;
use solana_sdk::signature::{Keypair, Signer};

use super::bags::BagsFake;
use super::ledger::{Ledger, USDC_DECIMALS, USDC_MINT_MAINNET, associated_token_address};

pub const LAMPORTS_PER_SOL: u64 = 1_000_000_000;

/// The community token's decimals (most Bags launches use 6 or 9; 6 keeps amounts readable).
pub const TOKEN_DECIMALS: u8 = 6;

/// The incinerator, a well-known protocol address that holds burnt tokens.
pub const INCINERATOR: Pubkey =
    Pubkey::from_str_const("1nc1nerator11111111111111111111111111111111");

/// What the seeding created, for the daemon's configuration and for tests.
pub struct World {
    /// The daemon's signer; also the owner wallet whose Bags fees are claimed.
    pub signer: Keypair,
    /// The community token whose holders receive credits.
    pub token_mint: Pubkey,
    /// Fee positions: (base mint, claimable lamports).
    pub positions: Vec<(Pubkey, u64)>,
    /// Wallets holding the token (on-curve owners with a positive balance), largest first.
    pub holder_wallets: Vec<Pubkey>,
    /// Owners that must never receive credits: program-derived vaults and protocol addresses.
    pub excluded_owners: Vec<Pubkey>,
}

/// How big a world to build.
#[derive(Clone, Debug)]
pub struct WorldOptions {
    /// Wallets holding the community token.
    pub holders: usize,
    /// Seeds the amounts; the same seed builds the same holder distribution.
    pub seed: u64,
    /// SOL given to the signer for transaction fees.
    pub signer_lamports: u64,
    /// USDC (base units) in the swap pool.
    pub pool_usdc: u64,
}

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            holders: 300,
            seed: 7,
            // 0.05 SOL: enough for many fees, far less than one claim, so the claim visibly pays.
            signer_lamports: LAMPORTS_PER_SOL / 20,
            // 1,000,000 USDC.
            pool_usdc: 1_000_000 * 10u64.pow(u32::from(USDC_DECIMALS)),
        }
    }
}

/// Seeds the ledger and the Bags fake.
pub fn seed(ledger: &Ledger, bags: &BagsFake, options: &WorldOptions) -> World {
    let mut rng = StdRng::seed_from_u64(options.seed);
    let signer = Keypair::new();
    ledger.airdrop(&signer.pubkey(), options.signer_lamports);

    ledger.create_mint(&USDC_MINT_MAINNET, USDC_DECIMALS);
    bags.fund_pool(options.pool_usdc);

    let token_mint = Keypair::new().pubkey();
    ledger.create_mint(&token_mint, TOKEN_DECIMALS);

    // Fees on the community token and on two other launches of the same owner.
    let positions = vec![
        (token_mint, 3 * LAMPORTS_PER_SOL + 250_000_000),
        (Keypair::new().pubkey(), LAMPORTS_PER_SOL + 500_000_000),
        (Keypair::new().pubkey(), 750_000_000),
    ];
    for (mint, lamports) in &positions {
        bags.add_position(&signer.pubkey(), mint, *lamports);
    }

    let unit = 10u64.pow(u32::from(TOKEN_DECIMALS));
    let mut holders: Vec<(Pubkey, u64)> = (0..options.holders)
        .map(|_| {
            // A long tail: most hold little, a few hold a lot.
            let tokens = match rng.gen_range(0..100) {
                0..=69 => rng.gen_range(1..5_000),
                70..=94 => rng.gen_range(5_000..200_000),
                _ => rng.gen_range(200_000..5_000_000),
            };
            (
                Keypair::new().pubkey(),
                tokens * unit + rng.gen_range(0..unit),
            )
        })
        .collect();
    for (index, (wallet, amount)) in holders.iter().enumerate() {
        let primary = associated_token_address(wallet, &token_mint);
        if index % 10 == 3 {
            // Every tenth holder splits the balance over a second, non-associated account.
            let half = amount / 2;
            ledger.mint_to(&primary, &token_mint, wallet, amount - half);
            ledger.mint_to(&Keypair::new().pubkey(), &token_mint, wallet, half);
        } else {
            ledger.mint_to(&primary, &token_mint, wallet, *amount);
        }
        if index % 25 == 7 {
            // And some keep an empty extra account around.
            ledger.mint_to(&Keypair::new().pubkey(), &token_mint, wallet, 0);
        }
    }
    // Wallets that sold everything: an empty associated account, no balance.
    for _ in 0..(options.holders / 20).max(1) {
        let wallet = Keypair::new().pubkey();
        ledger.mint_to(
            &associated_token_address(&wallet, &token_mint),
            &token_mint,
            &wallet,
            0,
        );
    }

    // Program-derived owners (off-curve) and a protocol address, each with a large balance.
    let bonding_curve_program = Keypair::new().pubkey();
    let (curve_vault_owner, _) = Pubkey::find_program_address(
        &[b"bonding-curve", token_mint.as_ref()],
        &bonding_curve_program,
    );
    let (amm_vault_owner, _) = Pubkey::find_program_address(
        &[b"pool-authority", token_mint.as_ref()],
        &bonding_curve_program,
    );
    let excluded_owners = vec![curve_vault_owner, amm_vault_owner, INCINERATOR];
    for owner in &excluded_owners {
        ledger.mint_to(
            &Keypair::new().pubkey(),
            &token_mint,
            owner,
            50_000_000 * unit,
        );
    }

    holders.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.to_string().cmp(&b.0.to_string())));
    World {
        signer,
        token_mint,
        positions,
        holder_wallets: holders.into_iter().map(|(wallet, _)| wallet).collect(),
        excluded_owners,
    }
}
