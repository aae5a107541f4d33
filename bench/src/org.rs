//! A synthetic Organization generated on the fly from a seed: nothing is
//! stored per user or per account, so its size never limits a benchmark.
//! Every fact is a pure function of (seed, account index, user index).

/// The shape of the generated Organization.
#[derive(Debug, Clone, Copy)]
pub struct OrgSpec {
    pub accounts: usize,
    pub users: usize,
    pub seed: u64,
    /// Share of users (percent) whose key is overdue for rotation.
    pub flagged_pct: u64,
    /// Every n-th member account denies AssumeRole (0: none).
    pub unreachable_every: usize,
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

impl OrgSpec {
    fn h(&self, account: usize, user: usize, salt: u64) -> u64 {
        mix(self.seed ^ mix((account as u64) << 32 ^ user as u64 ^ salt << 56))
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
        let flagged = self.h(account, user, 1) % 100 < self.flagged_pct;
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

    /// Users whose key trips a check, over the whole Organization's reachable accounts.
    pub fn expected_findings(&self) -> u64 {
        (0..self.accounts)
            .filter(|a| !self.unreachable(*a))
            .map(|a| (0..self.users).filter(|u| self.key(a, *u).flagged).count() as u64)
            .sum()
    }
}
