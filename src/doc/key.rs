//! Property names of twins, interned.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A property name of a twin section.
///
/// A hub's devices mostly share their property names (`firmware`,
/// `interval`, `battery`), so names are interned: a key is a pointer (8
/// bytes) to one shared copy of its text. Keys compare, order and hash by
/// their text alone, never by address, so every structure keyed by them
/// iterates in the same order on every machine and in every process.
///
/// Names nothing holds any more leave the table as it grows.
#[derive(Clone)]
pub(crate) struct Key(Arc<Box<str>>);

impl Key {
    /// The key named `name`.
    pub(crate) fn new(name: &str) -> Self {
        thread_local! {
            static RECENT: RefCell<HashSet<Key, Fixed>> = RefCell::default();
        }
        RECENT.with(|recent| {
            let mut recent = recent.borrow_mut();
            if let Some(key) = recent.get(name) {
                return key.clone();
            }
            // A thread asks the shared table once per name; the cache stays
            // small so that names nothing holds can leave the table.
            if recent.len() >= RECENT_MAX {
                recent.clear();
            }
            let key = intern(name);
            recent.insert(key.clone());
            key
        })
    }

    /// The name as text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Names a thread keeps at hand without asking the shared table.
const RECENT_MAX: usize = 4096;

/// A hasher without per-process keys: the table's layout is a function of
/// the names it holds (it never leaks into any output either way).
type Fixed = BuildHasherDefault<DefaultHasher>;

struct Table {
    keys: HashSet<Key, Fixed>,
    /// Size after the last sweep: the next sweep comes at twice as many.
    swept: usize,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    keys: HashSet::with_hasher(BuildHasherDefault::new()),
    swept: 0,
});

fn intern(name: &str) -> Key {
    // A poisoned lock still holds a valid set: a panic elsewhere cannot
    // leave it half-changed.
    let mut table = TABLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(key) = table.keys.get(name) {
        return key.clone();
    }
    if table.keys.len() >= (2 * table.swept).max(1024) {
        table.keys.retain(|k| Arc::strong_count(&k.0) > 1);
        table.swept = table.keys.len();
    }
    let key = Key(Arc::new(name.into()));
    table.keys.insert(key.clone());
    key
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.as_str() == other.as_str()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(Self::new(&name))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_compare_by_text() {
        let a = Key::new("battery");
        let b = Key::new(&String::from("battery"));
        assert_eq!(a, b);
        assert!(Key::new("alpha") < a);
        assert_eq!(a.as_str(), "battery");
    }

    use super::*;

    #[test]
    fn equal_names_share_one_copy() {
        let a = Key::new("shared-name");
        let b = Key::new("shared-name");
        assert!(Arc::ptr_eq(&a.0, &b.0));
        let other_thread = std::thread::spawn(|| Key::new("shared-name"))
            .join()
            .unwrap();
        assert!(Arc::ptr_eq(&a.0, &other_thread.0));
    }

    #[test]
    fn orders_by_text_and_reads_back() {
        let mut keys: Vec<Key> = ["b", "a", "c", "B"].into_iter().map(Key::new).collect();
        keys.sort();
        let names: Vec<&str> = keys.iter().map(Key::as_str).collect();
        assert_eq!(names, ["B", "a", "b", "c"]);
        assert_eq!(format!("{:?} {}", keys[1], keys[1]), "\"a\" a");
        let json = serde_json::to_string(&keys[1]).unwrap();
        assert_eq!(serde_json::from_str::<Key>(&json).unwrap(), keys[1]);
    }

    #[test]
    fn names_nothing_holds_leave_the_table() {
        let kept = Key::new("held-through-the-sweeps");
        for i in 0..20_000 {
            Key::new(&format!("transient-{i}"));
        }
        let held = Key::new("held-for-the-test");
        let size = TABLE.lock().unwrap().keys.len();
        assert!(size < 10_000, "{size}");
        assert_eq!(Key::new("held-for-the-test"), held);
        // A name something holds stays: it keeps its one copy.
        let again = Key::new("held-through-the-sweeps");
        assert!(Arc::ptr_eq(&kept.0, &again.0));
    }
}
