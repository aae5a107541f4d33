//! A synthetic Organization generated on the fly from a seed: nothing is
//! stored per user or per account, so its size never limits a benchmark.
//! Every fact is a pure function of (seed, account index, user index).

/// The shape of the generated Organization.
#[derive(Debug, Clone, Copy)]
pub struct OrgSpec {
    pub accounts: usize,
    /// Users per account; with `users_max` > 0, the smallest account's users
    /// (a skewed distribution: many small accounts, a few large ones).
    pub users: usize,
    /// 0: every account has `users` users. Otherwise users per account follow
    /// a Pareto distribution (minimum `users`, shape [`PARETO_SHAPE`]) capped
    /// at `users_max`.
    pub users_max: usize,
    pub seed: u64,
    /// Share of users (percent) whose key is overdue for rotation.
    pub flagged_pct: u64,
    /// `None`: users are flagged independently (`flagged_pct`), so almost
    /// every large account has a finding. `Some(p)`: only p % of accounts have
    /// findings (at least one flagged user each); the others none.
    pub accounts_with_findings_pct: Option<u64>,
    /// Share of accounts (percent) with an `owner` tag in Organizations.
    pub owner_tag_pct: u64,
    /// Every n-th member account denies AssumeRole (0: none).
    pub unreachable_every: usize,
    /// Share (percent) of flagged users with AdministratorAccess attached.
    pub admin_pct: u64,
    /// Share (percent) of accounts with findings where AWS quarantined the
    /// flagged user it picks (AWSCompromisedKeyQuarantineV3 attached).
    pub quarantined_pct: u64,
    /// Seconds since the epoch that ages are measured from.
    pub now: i64,
}

/// The management account is index 0.
pub fn account_id(index: usize) -> String {
    format!("{:012}", 100_000_000_000u64 + index as u64)
}

pub fn account_index(id: &str) -> Option<usize> {
    let n: u64 = id.parse().ok()?;
    n.checked_sub(100_000_000_000).map(|i| i as usize)
}

/// splitmix64: a fast, well-mixed hash of the coordinates.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One user's single access key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub id: String,
    pub created: i64,
    pub last_used: Option<i64>,
    pub flagged: bool,
}

/// The Pareto shape of skewed accounts: ~70 % of accounts within 3× the
/// minimum, ~1 % above 50×.
pub const PARETO_SHAPE: f64 = 1.1;

impl OrgSpec {
    fn h(&self, account: usize, user: usize, salt: u64) -> u64 {
        mix(self.seed ^ mix((account as u64) << 32 ^ user as u64 ^ salt << 56))
    }

    /// How many users account `account` has.
    pub fn users_in(&self, account: usize) -> usize {
        if self.users_max == 0 {
            return self.users;
        }
        // u in (0, 1]; x = min / u^(1/shape).
        let u = (self.h(account, 0, 11) % 1_000_000 + 1) as f64 / 1_000_000.0;
        let x = self.users as f64 / u.powf(1.0 / PARETO_SHAPE);
        (x as usize).clamp(self.users, self.users_max.max(self.users))
    }

    /// Whether the account is one of those with findings (with
    /// `accounts_with_findings_pct`); `None` without it.
    fn has_findings(&self, account: usize) -> Option<bool> {
        self.accounts_with_findings_pct
            .map(|p| self.h(account, 0, 12) % 100 < p)
    }

    /// The account's `owner` tag, if it has one.
    pub fn owner_tag(&self, account: usize) -> Option<String> {
        (self.h(account, 0, 13) % 100 < self.owner_tag_pct)
            .then(|| format!("team-{}@example.com", account_id(account)))
    }

    pub fn unreachable(&self, account: usize) -> bool {
        account != 0
            && self.unreachable_every != 0
            && account.is_multiple_of(self.unreachable_every)
    }

    pub fn user_name(&self, user: usize) -> String {
        format!("user-{user:05}")
    }

    /// The user's key: flagged users' keys are 100-499 days old (overdue);
    /// the others are 0-59 days old and were used within the last 10 days.
    pub fn key(&self, account: usize, user: usize) -> Key {
        let by_chance = self.h(account, user, 1) % 100 < self.flagged_pct;
        let flagged = match self.has_findings(account) {
            None => by_chance,
            Some(false) => false,
            // At least one: the user the hash picks.
            Some(true) => {
                by_chance
                    || user as u64 == self.h(account, 0, 14) % self.users_in(account).max(1) as u64
            }
        };
        let day = 86_400;
        let age_days = if flagged {
            100 + self.h(account, user, 2) % 400
        } else {
            self.h(account, user, 2) % 60
        } as i64;
        let created = self.now - age_days * day - (self.h(account, user, 3) % day as u64) as i64;
        let used_days = (self.h(account, user, 4) % 10) as i64;
        let last_used = (self.now - used_days * day).max(created);
        let mut id = format!("AKIA{:016X}", self.h(account, user, 5));
        id.truncate(20);
        Key {
            id,
            created,
            last_used: Some(last_used),
            flagged,
        }
    }

    /// Whether a flagged user has AdministratorAccess attached.
    pub fn is_admin(&self, account: usize, user: usize) -> bool {
        self.key(account, user).flagged && self.h(account, user, 16) % 100 < self.admin_pct
    }

    /// The user AWS quarantined in this account, if any (only in accounts
    /// with findings: the flagged user the hash picks).
    pub fn quarantined_user(&self, account: usize) -> Option<usize> {
        (self.has_findings(account) == Some(true)
            && self.h(account, 0, 15) % 100 < self.quarantined_pct)
            .then(|| (self.h(account, 0, 14) % self.users_in(account).max(1) as u64) as usize)
    }

    /// Findings over the whole Organization's reachable accounts: one per
    /// flagged user (an overdue key), and one more (key-exposed) per
    /// quarantined user.
    pub fn expected_findings(&self) -> u64 {
        (0..self.accounts)
            .filter(|a| !self.unreachable(*a))
            .map(|a| self.flagged_in(a) + u64::from(self.quarantined_user(a).is_some()))
            .sum()
    }

    /// Flagged keys of one account used in the last 90 days: the keys whose
    /// CloudTrail footprint is read (one per user here).
    pub fn used_flagged_in(&self, account: usize) -> u64 {
        (0..self.users_in(account))
            .map(|u| self.key(account, u))
            .filter(|k| k.flagged && k.last_used.is_some_and(|t| self.now - t < 90 * 86_400))
            .count() as u64
    }

    /// Flagged users of one account.
    pub fn flagged_in(&self, account: usize) -> u64 {
        (0..self.users_in(account))
            .filter(|u| self.key(account, *u).flagged)
            .count() as u64
    }
}
