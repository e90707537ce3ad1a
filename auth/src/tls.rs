//! TLS material: the root CA and server certificates Berth issues itself (`--tls auto`),
//! checks of an operator's bundle, and the rustls server configuration of the listener.
//!
//! Pure functions over PEM text: no files, no sockets, no clocks but the ones passed in or
//! read to date a new certificate. The caller (the registry) decides where material lives and
//! when it is renewed. rustls is always given the ring provider explicitly, so nothing here
//! depends on which provider a process installed (TECH-NOTES.md: exactly one, ring).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// How long a CA made by [`generate_ca`] is valid: ten years.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a server certificate made by [`issue_server_cert`] is valid: one year.
pub const SERVER_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A server certificate this close to its expiry is renewed at start: 30 days.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// New certificates are valid from this long before they were made, against clock skew
/// between replicas and clients.
const BACKDATE: Duration = Duration::from_secs(3600);
/// ALPN protocols the listener offers, in preference order.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why TLS material could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// rcgen could not generate a key or sign a certificate.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The PEM text holds no certificate or key of the expected kind.
    #[error("{0}")]
    Pem(String),
    /// A certificate could not be parsed.
    #[error("parsing a certificate: {0}")]
    Parse(String),
    /// rustls refused the certificate and key (for example they do not match).
    #[error("certificate and key: {0}")]
    Rustls(#[from] rustls::Error),
    /// The certificate does not chain to the CA.
    #[error("the certificate is not trusted by the CA: {0}")]
    Untrusted(String),
}

/// Result with the TLS [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A certificate (PEM, possibly a chain: leaf first) and its private key (PEM, PKCS#8).
#[derive(Clone, PartialEq, Eq)]
pub struct CertAndKey {
    /// The certificate, or the chain with the leaf first.
    pub cert_pem: String,
    /// The private key. Secret: never printed.
    pub key_pem: String,
}

impl std::fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAndKey")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// A new self-signed root CA: an ECDSA P-256 key, valid for [`CA_VALIDITY`], allowed to sign
/// end-entity certificates only (path length 0).
///
/// # Errors
/// [`Error::Generate`] if rcgen fails.
pub fn generate_ca(common_name: &str) -> Result<CertAndKey> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Berth");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY);
    let cert = params.self_signed(&key)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A new server certificate for `names` (DNS names or IP addresses; the first is also the
/// common name), with a new ECDSA P-256 key, signed by `ca`, valid for [`SERVER_VALIDITY`].
/// It is good for TLS servers and clients (so that replicas may later present it to each
/// other).
///
/// # Errors
/// [`Error::Pem`] for an unusable CA or no names, [`Error::Generate`] if signing fails.
pub fn issue_server_cert(ca: &CertAndKey, names: &[String]) -> Result<CertAndKey> {
    let Some(first) = names.first() else {
        return Err(Error::Pem(
            "a server certificate needs at least one name".into(),
        ));
    };
    let ca_key = KeyPair::from_pem(&ca.key_pem)
        .map_err(|e| Error::Pem(format!("the CA key is not usable: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)
        .map_err(|e| Error::Pem(format!("the CA certificate is not usable: {e}")))?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Berth");
    params.distinguished_name.push(DnType::CommonName, first);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    set_validity(&mut params, SERVER_VALIDITY);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A random positive serial number and a validity from [`BACKDATE`] ago for `valid_for`.
fn set_validity(params: &mut CertificateParams, valid_for: Duration) {
    let mut serial = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut serial);
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + valid_for;
}

/// Why the server certificate `cert_pem` must be replaced before serving with it: it is not
/// issued by `ca_cert_pem`, its names differ from `names`, or it expires within
/// [`RENEW_BEFORE`] of `now`. `None` when it is still good.
pub fn renewal_reason(
    cert_pem: &str,
    ca_cert_pem: &str,
    names: &[String],
    now: SystemTime,
) -> Option<String> {
    let (leaf, ca) = match (first_cert(cert_pem), first_cert(ca_cert_pem)) {
        (Ok(leaf), Ok(ca)) => (leaf, ca),
        (Err(e), _) | (_, Err(e)) => return Some(format!("unreadable: {e}")),
    };
    let (Ok((_, leaf)), Ok((_, ca))) = (
        X509Certificate::from_der(leaf.as_ref()),
        X509Certificate::from_der(ca.as_ref()),
    ) else {
        return Some("unreadable certificate".into());
    };
    if leaf.issuer() != ca.subject() || leaf.verify_signature(Some(ca.public_key())).is_err() {
        return Some("not issued by the cluster CA".into());
    }
    if cert_names(&leaf) != wanted_names(names) {
        return Some("its names differ from the ones configured".into());
    }
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let renew_secs = i64::try_from(RENEW_BEFORE.as_secs()).unwrap_or(i64::MAX);
    if leaf.validity().not_after.timestamp() - now_secs < renew_secs {
        return Some("it expires within 30 days".into());
    }
    if leaf.validity().not_before.timestamp() > now_secs {
        return Some("it is not valid yet".into());
    }
    None
}

/// The names (DNS names, lowercase, and IP addresses) a certificate is valid for.
fn cert_names(cert: &X509Certificate<'_>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => {
                    out.insert(dns.to_ascii_lowercase());
                }
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        out.insert(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// `names` as [`cert_names`] reports them.
fn wanted_names(names: &[String]) -> BTreeSet<String> {
    names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => n.to_ascii_lowercase(),
        })
        .collect()
}

/// The names (DNS names and IP addresses) of the first certificate in `cert_pem`.
///
/// # Errors
/// [`Error::Pem`] / [`Error::Parse`] when there is no readable certificate.
pub fn names_of(cert_pem: &str) -> Result<Vec<String>> {
    let der = first_cert(cert_pem)?;
    let (_, cert) =
        X509Certificate::from_der(der.as_ref()).map_err(|e| Error::Parse(e.to_string()))?;
    Ok(cert_names(&cert).into_iter().collect())
}

/// Lowercase hex SHA-256 of the DER of the first certificate in `cert_pem`: the fingerprint
/// `openssl x509 -noout -fingerprint -sha256` shows (without colons).
///
/// # Errors
/// [`Error::Pem`] when there is no certificate.
pub fn fingerprint(cert_pem: &str) -> Result<String> {
    Ok(hex::encode(Sha256::digest(first_cert(cert_pem)?.as_ref())))
}

/// The certificates of a PEM text, in order.
fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem(format!("reading certificates: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Pem("no certificate in the PEM text".into()));
    }
    Ok(certs)
}

fn first_cert(pem: &str) -> Result<CertificateDer<'static>> {
    certs(pem).map(|mut c| c.swap_remove(0))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration of a TLS listener serving `cert` (chain, leaf first) with its
/// key, offering HTTP/2 and HTTP/1.1 by ALPN, without client certificates.
///
/// # Errors
/// [`Error::Pem`] for unreadable PEM, [`Error::Rustls`] when the key does not match the
/// certificate or is of an unsupported kind.
pub fn server_config(cert: &CertAndKey) -> Result<rustls::ServerConfig> {
    let chain = certs(&cert.cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes())
        .map_err(|e| Error::Pem(format!("reading the private key: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Checks that the certificate chain `cert_pem` (leaf first, then any intermediates) is
/// trusted by the root `ca_pem` for the leaf's first name, now.
///
/// # Errors
/// [`Error::Untrusted`] naming why it is not; [`Error::Pem`] / [`Error::Parse`] for
/// unreadable PEM.
pub fn check_chain(cert_pem: &str, ca_pem: &str) -> Result<()> {
    let mut chain = certs(cert_pem)?;
    let leaf = chain.remove(0);
    let name = names_of(cert_pem)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Untrusted("the certificate names no host".into()))?;
    let server_name =
        ServerName::try_from(name.clone()).map_err(|e| Error::Untrusted(format!("{name}: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(ca_pem)? {
        roots
            .add(ca)
            .map_err(|e| Error::Untrusted(format!("the CA certificate: {e}")))?;
    }
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| Error::Untrusted(e.to_string()))?;
    verifier
        .verify_server_cert(&leaf, &chain, &server_name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| Error::Untrusted(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn issued_server_cert_chains_to_its_ca_and_serves() {
        let ca = generate_ca("Berth test CA").unwrap();
        let server = issue_server_cert(&ca, &names(&["127.0.0.1", "localhost"])).unwrap();
        check_chain(&server.cert_pem, &ca.cert_pem).unwrap();
        let config = server_config(&server).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert_eq!(
            names_of(&server.cert_pem).unwrap(),
            names(&["127.0.0.1", "localhost"])
        );
        assert_eq!(
            renewal_reason(
                &server.cert_pem,
                &ca.cert_pem,
                &names(&["LOCALHOST", "127.0.0.1"]),
                SystemTime::now()
            ),
            None
        );
    }

    #[test]
    fn another_ca_does_not_trust_the_cert() {
        let ca = generate_ca("one").unwrap();
        let other = generate_ca("two").unwrap();
        let server = issue_server_cert(&ca, &names(&["localhost"])).unwrap();
        assert!(matches!(
            check_chain(&server.cert_pem, &other.cert_pem),
            Err(Error::Untrusted(_))
        ));
        let reason = renewal_reason(
            &server.cert_pem,
            &other.cert_pem,
            &names(&["localhost"]),
            SystemTime::now(),
        );
        assert_eq!(reason.as_deref(), Some("not issued by the cluster CA"));
    }

    #[test]
    fn renewal_is_due_near_expiry_or_when_names_change() {
        let ca = generate_ca("CA").unwrap();
        let server = issue_server_cert(&ca, &names(&["localhost"])).unwrap();
        let wanted = names(&["localhost"]);
        let later = |days: u64| SystemTime::now() + Duration::from_secs(days * 24 * 3600);
        assert_eq!(
            renewal_reason(&server.cert_pem, &ca.cert_pem, &wanted, later(300)),
            None
        );
        assert!(renewal_reason(&server.cert_pem, &ca.cert_pem, &wanted, later(340)).is_some());
        assert!(renewal_reason(
            &server.cert_pem,
            &ca.cert_pem,
            &names(&["localhost", "10.0.0.1"]),
            SystemTime::now()
        )
        .is_some());
        assert!(renewal_reason("garbage", &ca.cert_pem, &wanted, SystemTime::now()).is_some());
    }

    #[test]
    fn mismatched_key_is_refused() {
        let ca = generate_ca("CA").unwrap();
        let a = issue_server_cert(&ca, &names(&["a.example"])).unwrap();
        let b = issue_server_cert(&ca, &names(&["b.example"])).unwrap();
        let mixed = CertAndKey {
            cert_pem: a.cert_pem,
            key_pem: b.key_pem,
        };
        assert!(server_config(&mixed).is_err());
    }

    #[test]
    fn fingerprint_is_sha256_of_der_and_key_is_not_printed() {
        let ca = generate_ca("CA").unwrap();
        let fp = fingerprint(&ca.cert_pem).unwrap();
        assert_eq!(fp.len(), 64);
        assert_eq!(
            fp,
            hex::encode(Sha256::digest(first_cert(&ca.cert_pem).unwrap()))
        );
        assert!(!format!("{ca:?}").contains(&ca.key_pem));
        assert!(fingerprint("no pem here").is_err());
    }
}
