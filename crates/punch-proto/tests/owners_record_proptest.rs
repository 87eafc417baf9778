//! The stored form of a name's owner (the server's name database): any owner round-trips,
//! and arbitrary bytes never panic the parser; what parses re-encodes to the same bytes.

use proptest::prelude::*;
use punch_proto::owners::{Owner, RECORD_LEN};

proptest! {
    #[test]
    fn owners_round_trip(key in any::<[u8; 32]>(), day in any::<u32>(), name in "[a-z ]{1,64}") {
        let o = Owner { key, last_seen: day };
        prop_assert_eq!(Owner::from_record(&name, &o.to_record()), Some(o));
    }

    #[test]
    fn arbitrary_records_never_panic(name in ".{0,70}", value in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Some(o) = Owner::from_record(&name, &value) {
            prop_assert_eq!(value.len(), RECORD_LEN);
            let again = o.to_record();
            prop_assert_eq!(again.as_slice(), value.as_slice());
        }
    }
}
