//! The chat framing: an empty message is a keepalive that readers skip, so a sender may
//! write one on an idle stream without the peer seeing anything.

use punch::chat::{read_message, send_message};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn keepalives_are_skipped_and_messages_kept_in_order() {
    let (mut w, mut r) = tokio::io::duplex(4096);
    send_message(&mut w, "").await.unwrap();
    send_message(&mut w, "first").await.unwrap();
    send_message(&mut w, "").await.unwrap();
    send_message(&mut w, "").await.unwrap();
    send_message(&mut w, "second").await.unwrap();
    send_message(&mut w, "").await.unwrap();
    w.shutdown().await.unwrap();
    drop(w);
    assert_eq!(
        read_message(&mut r).await.unwrap().as_deref(),
        Some("first")
    );
    assert_eq!(
        read_message(&mut r).await.unwrap().as_deref(),
        Some("second")
    );
    assert_eq!(
        read_message(&mut r).await.unwrap(),
        None,
        "a clean end after keepalives"
    );
}

#[tokio::test]
async fn a_stream_ending_inside_a_message_is_still_an_error() {
    let (mut w, mut r) = tokio::io::duplex(4096);
    send_message(&mut w, "").await.unwrap();
    // A length of 10, then only 3 bytes.
    w.write_all(&[0, 0, 0, 10, b'a', b'b', b'c']).await.unwrap();
    drop(w);
    assert!(read_message(&mut r).await.is_err());
}
