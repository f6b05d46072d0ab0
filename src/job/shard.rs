//! Sharding a merge across machines: each machine merges the devices of
//! one shard, chosen by a stable hash of the device id, and the shards'
//! files concatenate into the whole merge's.

use std::fmt;
use std::str::FromStr;

/// One shard of `count`: the devices whose id hashes to `index`.
///
/// The hash is 64-bit FNV-1a over the id's UTF-8 bytes, taken modulo
/// `count`: stable across runs, platforms and versions, so every machine
/// given the same `count` agrees on which shard a device is in, and any
/// tool can split or check files the same way. Shards are written `K/N`
/// with `K` from 1 to `N`.
///
/// Every shard reads every input whole (lines of other shards are split
/// off by id, never parsed into devices or merged), so the stamps of
/// [policy 5](crate::contract#policies) are the same on every machine; a bad line fails at least the
/// shard its device is in. A device and its modules are always in one
/// shard: the hash is of the device id alone.
///
/// # Example
///
/// ```
/// use failback::job::Shard;
///
/// let shards: Vec<Shard> = (1..=4).map(|k| format!("{k}/4").parse().unwrap()).collect();
/// // Every device is in exactly one shard.
/// for id in ["d1", "d2", "sensor-0042", "edge-gw"] {
///     assert_eq!(shards.iter().filter(|s| s.contains(id)).count(), 1);
/// }
/// assert_eq!(shards[1].to_string(), "2/4");
/// assert!("0/4".parse::<Shard>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 0-based.
    index: u64,
    count: u64,
}

impl Shard {
    /// Shard `k` (1-based) of `n`.
    ///
    /// # Errors
    ///
    /// A message when `n` is 0 or `k` is not in `1..=n`.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::job::Shard;
    ///
    /// assert_eq!(Shard::new(2, 4)?.to_string(), "2/4");
    /// assert_eq!(Shard::new(5, 4).unwrap_err(), "shard 5/4: expected K/N with 1 <= K <= N");
    /// # Ok::<(), String>(())
    /// ```
    pub fn new(k: u64, n: u64) -> Result<Self, String> {
        if n == 0 || k == 0 || k > n {
            return Err(format!("shard {k}/{n}: expected K/N with 1 <= K <= N"));
        }
        Ok(Self {
            index: k - 1,
            count: n,
        })
    }

    /// Whether device `id` (and its modules) belong to this shard.
    ///
    /// # Example
    ///
    /// ```
    /// use failback::job::Shard;
    ///
    /// let (first, second) = (Shard::new(1, 2)?, Shard::new(2, 2)?);
    /// assert_ne!(first.contains("thermostat-7"), second.contains("thermostat-7"));
    /// assert!(Shard::new(1, 1)?.contains("thermostat-7"));
    /// # Ok::<(), String>(())
    /// ```
    pub fn contains(&self, id: &str) -> bool {
        fnv1a(id.as_bytes()) % self.count == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse = |part: &str| part.trim().parse::<u64>().ok();
        match s.split_once('/').map(|(k, n)| (parse(k), parse(n))) {
            Some((Some(k), Some(n))) => Shard::new(k, n),
            _ => Err(format!("shard {s:?}: expected K/N, e.g. 2/4")),
        }
    }
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn shards_split_a_fleet_evenly_and_completely() {
        let n = 4;
        let shards: Vec<Shard> = (1..=n).map(|k| Shard::new(k, n).unwrap()).collect();
        let mut sizes = [0usize; 4];
        for i in 0..10_000 {
            let id = format!("device-{i:07}");
            let owners: Vec<usize> = (0..4).filter(|&s| shards[s].contains(&id)).collect();
            assert_eq!(owners.len(), 1, "{id}");
            sizes[owners[0]] += 1;
        }
        assert!(
            sizes.iter().all(|&s| (2_300..2_700).contains(&s)),
            "{sizes:?}"
        );
    }

    #[test]
    fn bad_shards_are_refused() {
        for bad in ["", "1", "0/2", "3/2", "1/0", "a/b", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad:?}");
        }
        assert_eq!(" 2 / 3 ".parse::<Shard>(), Shard::new(2, 3));
    }
}
