//! End-to-end peer authentication: rustls and quinn configs that pin Ed25519 keys.
//!
//! Both sides of every connection authenticate with RFC 7250 raw public keys in TLS 1.3
//! (RFC 8446): each presents the DER SubjectPublicKeyInfo of its [`Identity`] key (RFC 8410 §4)
//! and proves possession with an Ed25519 CertificateVerify signature (RFC 8446 §4.4.3). There are
//! no certificates, no CAs and no names:
//! - the client accepts the server only if the presented key is exactly the one it expected
//!   ([`client_config`]);
//! - the server requires a client key and accepts it only if the caller's `accept` predicate says
//!   so ([`server_config`]); the caller keeps the set of peers it was introduced to.
//!
//! After the handshake, [`peer_public_key`] gives the authenticated key of the other side.
//! The plain rustls configs ([`rustls_client_config`], [`rustls_server_config`]) are the same
//! thing for TLS over TCP. Every config uses the ring provider explicitly (no process-default
//! provider) with the cipher suites in this machine's order ([`cipher_suites`]: AES-128-GCM
//! first where the CPU has AES instructions, ChaCha20-Poly1305 first where it has not),
//! TLS 1.3 only, ALPN [`ALPN`], and no session resumption (so every connection runs a
//! full handshake in which the key is checked again: a predicate that stops accepting a peer
//! takes effect for its next connection, and tickets never bypass the pin).
//!
//! This module does not own key storage ([`crate::identity`]), deciding which peers to trust (the
//! caller's `accept`), sockets or endpoints.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{AlwaysResolvesClientRawPublicKeys, Resumption};
use rustls::crypto::{verify_tls13_signature_with_raw_key, CryptoProvider};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer,
    UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{AlwaysResolvesServerRawPublicKeys, NoServerSessionStorage};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::identity::{Identity, PublicKey};

/// ALPN protocol identifier of punch peer connections (RFC 7301), QUIC and TLS over TCP alike.
pub const ALPN: &[u8] = b"punch/1";

/// The server name every client uses. Names play no role in authentication (the pinned key is
/// the identity), but quinn's `connect` and rustls need one; pass this.
pub const SERVER_NAME: &str = "punch";

/// QUIC max idle timeout (RFC 9000 §10.1): twice quinn's default, so a connection outlives
/// a rendezvous server that is away for half a minute while its relay carried the pair (the
/// client finds a path again within seconds of the server's return). Keep-alives keep the
/// path and the NAT mappings alive meanwhile, so only a really dead peer reaches it.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Keep-alive interval that [`client_config`] and [`server_config`] use: many NATs expire idle
/// UDP mappings after 30 s (design note; RFC 4787 REQ-5 only promises 2 min), so a packet every
/// 10 s keeps them open even if one or two keep-alives are lost, and stays well under
/// [`MAX_IDLE_TIMEOUT`].
pub const DEFAULT_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// The largest QUIC datagram path MTU discovery may reach: 1,452 bytes (quinn's bound, an
/// IPv6 packet of 1,500 bytes) less the relay header, so that a size found on a direct path
/// still fits once the connection falls back to the relay (quinn sees one path: it
/// addresses the peer by a virtual address, whatever the route). Below it quinn starts at
/// 1,200 bytes and probes upward; a path that drops the probes stays at the size that
/// worked.
pub const MAX_QUIC_PAYLOAD: u16 = 1452 - punch_proto::wire::RELAY_HEADER_LEN as u16;

/// How much stream data one peer may send ahead of what we have read, over all its
/// streams: what a peer can make us buffer. quinn's default is unlimited (only its
/// per-stream window, 1.25 MB, times 100 concurrent streams of each kind bounded it: 250
/// MB); this is quinn's default send window, so a peer with punch's defaults never meets
/// it, and one that raised its own is held to it.
pub const CONNECTION_WINDOW: u32 = 10_000_000;

/// Decides whether a client key may connect to our server (see [`server_config`]).
pub type AcceptPeer = Arc<dyn Fn(&PublicKey) -> bool + Send + Sync>;

/// Errors from building TLS or QUIC configs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// rustls refused the configuration (e.g. it could not load the identity key).
    #[error("rustls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The crypto provider lacks the TLS 1.3 cipher suite QUIC needs for its Initial packets
    /// (RFC 9001 §5.2).
    #[error("QUIC configuration: {0}")]
    NoInitialCipherSuite(#[from] NoInitialCipherSuite),
    /// The keep-alive interval is zero, or not shorter than [`MAX_IDLE_TIMEOUT`] (idle
    /// connections would time out between keep-alives).
    #[error("keep-alive interval {0:?} must be above zero and below the idle timeout {MAX_IDLE_TIMEOUT:?}")]
    InvalidKeepAlive(Duration),
}

/// The crypto provider of every config here: rustls's ring provider, with the TLS 1.3
/// suites in [`cipher_suites`]'s order for this machine.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    provider_with(aes_in_hardware())
}

/// rustls's ring provider with the suites [`cipher_suites`] orders for `aes_hardware`.
fn provider_with(aes_hardware: bool) -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = cipher_suites(aes_hardware);
    Arc::new(provider)
}

/// The TLS 1.3 cipher suites we offer, most preferred first. A TLS server (rustls's
/// default) takes the first of the client's list it supports, so the connecting side's
/// hardware decides. With AES instructions, AES-128-GCM first: AES-256 does 14 rounds per
/// block to its 10, for more than the 128-bit security our keys have (Ed25519, X25519);
/// rustls's default puts AES-256 first. Without them ChaCha20-Poly1305 first: AES in
/// constant-time software is several times slower (a Raspberry Pi 4 has no AES
/// instructions).
pub fn cipher_suites(aes_hardware: bool) -> Vec<rustls::SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite::{
        TLS13_AES_128_GCM_SHA256 as AES_128, TLS13_AES_256_GCM_SHA384 as AES_256,
        TLS13_CHACHA20_POLY1305_SHA256 as CHACHA,
    };
    if aes_hardware {
        vec![AES_128, AES_256, CHACHA]
    } else {
        vec![CHACHA, AES_128, AES_256]
    }
}

/// Whether this CPU has AES and carry-less multiplication instructions (AES-GCM at
/// hardware speed). Other architectures are taken not to (ChaCha20 is fast in software).
fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// A rustls client config (TLS 1.3, ALPN [`ALPN`], raw public keys) that presents `identity`
/// and accepts only a server presenting exactly `expected_peer`. Use [`SERVER_NAME`] as the name.
pub fn rustls_client_config(
    identity: &Identity,
    expected_peer: PublicKey,
) -> Result<rustls::ClientConfig, TlsError> {
    client_config_with(identity, expected_peer, crypto_provider())
}

/// [`rustls_client_config`] with the given provider.
fn client_config_with(
    identity: &Identity,
    expected_peer: PublicKey,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ClientConfig, TlsError> {
    let key = certified_key(identity, &provider)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServerKey {
            expected: expected_peer,
            provider,
        }))
        .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(key)));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// A rustls server config (TLS 1.3, ALPN [`ALPN`], raw public keys) that presents `identity`,
/// requires a client key and accepts it only if `accept` returns true for it.
///
/// `accept` runs when the client's key arrives, before the client has proven it holds the
/// private key (that proof comes next and fails the handshake if wrong), so it must only
/// answer, not act: do not record the key as connected there, use [`peer_public_key`] after
/// the handshake.
pub fn rustls_server_config(
    identity: &Identity,
    accept: AcceptPeer,
) -> Result<rustls::ServerConfig, TlsError> {
    server_config_with(identity, accept, crypto_provider())
}

/// [`rustls_server_config`] with the given provider.
fn server_config_with(
    identity: &Identity,
    accept: AcceptPeer,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, TlsError> {
    let key = certified_key(identity, &provider)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(AcceptedClientKeys { accept, provider }))
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(key)));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// A quinn client config that authenticates as `identity` and connects only to a server holding
/// `expected_peer`, with [`transport_config`]`(`[`DEFAULT_KEEP_ALIVE_INTERVAL`]`)`.
///
/// Pass [`SERVER_NAME`] to `Endpoint::connect_with`. Override the transport with
/// `config.transport_config(transport_config(interval)?)`.
pub fn client_config(
    identity: &Identity,
    expected_peer: PublicKey,
) -> Result<quinn::ClientConfig, TlsError> {
    let crypto = QuicClientConfig::try_from(rustls_client_config(identity, expected_peer)?)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config(DEFAULT_KEEP_ALIVE_INTERVAL)?);
    Ok(config)
}

/// A quinn server config that authenticates as `identity` and accepts a client only if it
/// presents a key for which `accept` returns true (see [`rustls_server_config`]), with
/// [`transport_config`]`(`[`DEFAULT_KEEP_ALIVE_INTERVAL`]`)`.
pub fn server_config(
    identity: &Identity,
    accept: AcceptPeer,
) -> Result<quinn::ServerConfig, TlsError> {
    let crypto = QuicServerConfig::try_from(rustls_server_config(identity, accept)?)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config(DEFAULT_KEEP_ALIVE_INTERVAL)?);
    Ok(config)
}

/// QUIC transport parameters for peer connections: keep-alive every `keep_alive_interval`
/// (quinn's default sends none), a [`MAX_IDLE_TIMEOUT`] idle timeout, and at most
/// [`CONNECTION_WINDOW`] of unread stream data from the peer. Set it on either config
/// with `transport_config(..)`.
pub fn transport_config(
    keep_alive_interval: Duration,
) -> Result<Arc<quinn::TransportConfig>, TlsError> {
    if keep_alive_interval >= MAX_IDLE_TIMEOUT || keep_alive_interval.is_zero() {
        return Err(TlsError::InvalidKeepAlive(keep_alive_interval));
    }
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(keep_alive_interval));
    transport.receive_window(quinn::VarInt::from_u32(CONNECTION_WINDOW));
    let mut mtud = quinn::MtuDiscoveryConfig::default();
    mtud.upper_bound(MAX_QUIC_PAYLOAD);
    transport.mtu_discovery_config(Some(mtud));
    // 30 s fits a QUIC varint of milliseconds, so the conversion cannot fail.
    let idle =
        quinn::IdleTimeout::try_from(MAX_IDLE_TIMEOUT).expect("30 s is a valid idle timeout");
    transport.max_idle_timeout(Some(idle));
    Ok(Arc::new(transport))
}

/// The authenticated key of the other side of an established connection; `None` before the
/// handshake completed or if the connection was not made with these configs.
pub fn peer_public_key(conn: &quinn::Connection) -> Option<PublicKey> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    public_key_from_peer_certificates(&certs)
}

/// The peer's key from what rustls reports as its certificates (`peer_certificates()` of a
/// rustls connection, e.g. over TCP): with raw public keys that is one SubjectPublicKeyInfo.
pub fn public_key_from_peer_certificates(certs: &[CertificateDer<'_>]) -> Option<PublicKey> {
    match certs {
        [spki] => PublicKey::from_spki(spki.as_ref()),
        _ => None,
    }
}

/// The identity as a rustls key whose "certificate" is its raw SubjectPublicKeyInfo (RFC 7250).
fn certified_key(
    identity: &Identity,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.pkcs8_der().to_vec()));
    let signing_key = provider.key_provider.load_private_key(der)?;
    let spki = CertificateDer::from(identity.public_key().to_spki().to_vec());
    Ok(Arc::new(CertifiedKey::new(vec![spki], signing_key)))
}

/// The presented entry as our key, if it is a single Ed25519 SubjectPublicKeyInfo.
fn presented_key(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<PublicKey, rustls::Error> {
    if !intermediates.is_empty() {
        return Err(CertificateError::BadEncoding.into());
    }
    PublicKey::from_spki(end_entity.as_ref()).ok_or_else(|| CertificateError::BadEncoding.into())
}

/// Checks the CertificateVerify signature (RFC 8446 §4.4.3) against the presented raw key.
fn verify_signature(
    message: &[u8],
    spki: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    provider: &CryptoProvider,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
    }
    verify_tls13_signature_with_raw_key(
        message,
        &SubjectPublicKeyInfoDer::from(spki.as_ref()),
        dss,
        &provider.signature_verification_algorithms,
    )
}

/// TLS 1.2 is never negotiated (configs are TLS 1.3 only); refuse if asked anyway.
fn tls12_refused() -> rustls::Error {
    rustls::PeerIncompatible::Tls12NotOffered.into()
}

/// Client side: the server must present exactly `expected`.
struct PinnedServerKey {
    expected: PublicKey,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for PinnedServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedServerKey")
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for PinnedServerKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = presented_key(end_entity, intermediates)?;
        if key != self.expected {
            tracing::debug!(expected = %self.expected, presented = %key, "server key mismatch");
            return Err(CertificateError::ApplicationVerificationFailure.into());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(message, cert, dss, &self.provider)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// Server side: the client must present a key that `accept` approves.
struct AcceptedClientKeys {
    accept: AcceptPeer,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for AcceptedClientKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptedClientKeys").finish_non_exhaustive()
    }
}

impl ClientCertVerifier for AcceptedClientKeys {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let key = presented_key(end_entity, intermediates)?;
        if !(self.accept)(&key) {
            tracing::debug!(presented = %key, "client key not accepted");
            return Err(CertificateError::ApplicationVerificationFailure.into());
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(message, cert, dss, &self.provider)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_must_be_between_zero_and_idle_timeout() {
        assert!(transport_config(DEFAULT_KEEP_ALIVE_INTERVAL).is_ok());
        for bad in [Duration::ZERO, MAX_IDLE_TIMEOUT, MAX_IDLE_TIMEOUT * 2] {
            assert!(matches!(
                transport_config(bad),
                Err(TlsError::InvalidKeepAlive(d)) if d == bad
            ));
        }
    }

    /// Runs a TLS handshake in memory between `client` and `server`; the suite agreed.
    fn negotiated_suite(
        client: rustls::ClientConfig,
        server: rustls::ServerConfig,
    ) -> rustls::CipherSuite {
        /// Everything `from` has to send, written into `to`, which reads it all.
        fn deliver(from: &mut rustls::Connection, to: &mut rustls::Connection) {
            let mut wire = Vec::new();
            while from.wants_write() {
                from.write_tls(&mut wire).unwrap();
            }
            let mut unread = wire.as_slice();
            while !unread.is_empty() {
                to.read_tls(&mut unread).unwrap();
                to.process_new_packets().unwrap();
            }
        }
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        let mut c = rustls::Connection::from(
            rustls::ClientConnection::new(Arc::new(client), name).unwrap(),
        );
        let mut s =
            rustls::Connection::from(rustls::ServerConnection::new(Arc::new(server)).unwrap());
        for _ in 0..10 {
            deliver(&mut c, &mut s);
            deliver(&mut s, &mut c);
            if !c.is_handshaking() && !s.is_handshaking() {
                let suite = c.negotiated_cipher_suite().unwrap().suite();
                assert_eq!(Some(suite), s.negotiated_cipher_suite().map(|s| s.suite()));
                return suite;
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn the_connecting_sides_hardware_picks_the_cipher_suite() {
        let (client_id, server_id) = (Identity::generate(), Identity::generate());
        let accept: AcceptPeer = Arc::new(|_: &PublicKey| true);
        let agreed = |client_aes, server_aes| {
            let client = client_config_with(
                &client_id,
                server_id.public_key(),
                provider_with(client_aes),
            );
            let server = server_config_with(&server_id, accept.clone(), provider_with(server_aes));
            negotiated_suite(client.unwrap(), server.unwrap())
        };
        use rustls::CipherSuite::{TLS13_AES_128_GCM_SHA256, TLS13_CHACHA20_POLY1305_SHA256};
        assert_eq!(agreed(true, true), TLS13_AES_128_GCM_SHA256);
        assert_eq!(agreed(true, false), TLS13_AES_128_GCM_SHA256);
        assert_eq!(agreed(false, true), TLS13_CHACHA20_POLY1305_SHA256);
        assert_eq!(agreed(false, false), TLS13_CHACHA20_POLY1305_SHA256);
        // What ships: this machine's order, on both sides.
        let shipped = negotiated_suite(
            rustls_client_config(&client_id, server_id.public_key()).unwrap(),
            rustls_server_config(&server_id, accept.clone()).unwrap(),
        );
        assert_eq!(shipped, cipher_suites(aes_in_hardware())[0].suite());
    }

    #[test]
    fn configs_are_tls13_with_punch_alpn() {
        let identity = Identity::generate();
        let peer = Identity::generate().public_key();
        let client = rustls_client_config(&identity, peer).unwrap();
        assert_eq!(client.alpn_protocols, vec![ALPN.to_vec()]);
        let server = rustls_server_config(&identity, Arc::new(|_: &PublicKey| true)).unwrap();
        assert_eq!(server.alpn_protocols, vec![ALPN.to_vec()]);
        assert_eq!(server.send_tls13_tickets, 0);
        assert!(client_config(&identity, peer).is_ok());
        assert!(server_config(&identity, Arc::new(|_: &PublicKey| true)).is_ok());
    }

    #[test]
    fn peer_key_needs_exactly_one_ed25519_spki() {
        let key = Identity::generate().public_key();
        let spki = CertificateDer::from(key.to_spki().to_vec());
        assert_eq!(
            public_key_from_peer_certificates(std::slice::from_ref(&spki)),
            Some(key)
        );
        assert_eq!(public_key_from_peer_certificates(&[]), None);
        assert_eq!(
            public_key_from_peer_certificates(&[spki.clone(), spki]),
            None
        );
    }
}
