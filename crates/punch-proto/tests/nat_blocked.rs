//! A network that drops all UDP is `blocked`, with a reason naming the server, in bounded
//! time; nothing else is guessed.

mod nat_sim;

use std::time::Duration;

use nat_sim::{Scenario, SERVER};
use punch_proto::nat::{Classic, Outcome, DEFAULT_MAX_TRANSMITS};

#[test]
fn blocked() {
    let run = Scenario::blocked().run();
    let r = &run.report;
    assert_eq!(r.classic, Some(Classic::Blocked), "{r:#?}");
    assert_eq!(r.mapping, None);
    assert_eq!(r.filtering, None);
    assert_eq!(r.public, None);
    assert_eq!(r.nat, None);
    assert_eq!(r.hairpin, None);
    assert_eq!(r.port_allocation, None);
    assert_eq!(r.tests.len(), 2);
    for o in &r.tests {
        assert_eq!(o.outcome, Outcome::NoAnswer);
        assert_eq!(o.transmits, DEFAULT_MAX_TRANSMITS);
    }
    assert!(
        r.explanation.contains(&SERVER.to_string()),
        "{}",
        r.explanation
    );
    assert!(
        r.notes.iter().any(|n| n.contains("no answer")),
        "{:?}",
        r.notes
    );
    assert!(
        run.elapsed <= Duration::from_millis(1500),
        "{:?}",
        run.elapsed
    );
}
