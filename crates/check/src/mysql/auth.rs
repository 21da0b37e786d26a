//! The password plugins' client side: what to answer to a nonce, and the RSA step of
//! caching_sha2_password's full authentication (and of sha256_password) over plain TCP.

use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::{Oaep, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::handshake::{CACHING_SHA2_PASSWORD, NATIVE_PASSWORD, SHA256_PASSWORD};

/// The auth plugins the checker can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    /// mysql_native_password
    Native,
    /// caching_sha2_password
    CachingSha2,
    /// sha256_password
    Sha256,
}

impl Plugin {
    pub fn from_name(name: &str) -> Option<Plugin> {
        match name {
            NATIVE_PASSWORD => Some(Plugin::Native),
            CACHING_SHA2_PASSWORD => Some(Plugin::CachingSha2),
            SHA256_PASSWORD => Some(Plugin::Sha256),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Plugin::Native => NATIVE_PASSWORD,
            Plugin::CachingSha2 => CACHING_SHA2_PASSWORD,
            Plugin::Sha256 => SHA256_PASSWORD,
        }
    }

    /// The first answer to the server's nonce.
    pub fn first_response(self, password: &[u8], nonce: &[u8]) -> Vec<u8> {
        match self {
            Plugin::Native => native_password(password, nonce),
            Plugin::CachingSha2 => caching_sha2_password(password, nonce),
            // Without TLS the password goes RSA-encrypted, under a key the client asks for
            // with 0x01; an empty password is the single byte 0.
            Plugin::Sha256 if password.is_empty() => vec![0],
            Plugin::Sha256 => vec![REQUEST_PUBLIC_KEY_SHA256],
        }
    }
}

/// sha256_password's "send me your public key".
pub const REQUEST_PUBLIC_KEY_SHA256: u8 = 0x01;
/// caching_sha2_password's "send me your public key".
pub const REQUEST_PUBLIC_KEY_CACHING_SHA2: u8 = 0x02;
/// caching_sha2_password's AuthMoreData: the scramble matched the server's cache.
pub const FAST_AUTH_SUCCESS: u8 = 0x03;
/// caching_sha2_password's AuthMoreData: the server needs the password itself.
pub const PERFORM_FULL_AUTHENTICATION: u8 = 0x04;

/// mysql_native_password: SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password))); an empty
/// password answers nothing.
pub fn native_password(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha1::digest(password);
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(nonce_20(nonce));
    h.update(stage2);
    let mask = h.finalize();
    stage1.iter().zip(mask.iter()).map(|(a, b)| a ^ b).collect()
}

/// caching_sha2_password: SHA256(password) XOR SHA256(SHA256(SHA256(password)) + nonce); an
/// empty password answers nothing.
pub fn caching_sha2_password(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha256::digest(password);
    let stage2 = Sha256::digest(stage1);
    let mut h = Sha256::new();
    h.update(stage2);
    h.update(nonce_20(nonce));
    let mask = h.finalize();
    stage1.iter().zip(mask.iter()).map(|(a, b)| a ^ b).collect()
}

/// Both scrambles use the first 20 bytes of the nonce (servers send exactly 20, plus a NUL
/// that the parsers already dropped).
fn nonce_20(nonce: &[u8]) -> &[u8] {
    &nonce[..nonce.len().min(20)]
}

/// The password for the RSA step: (password + NUL) XOR the nonce repeated, encrypted with
/// RSA-OAEP (SHA-1, as the servers' OpenSSL `RSA_PKCS1_OAEP_PADDING`) under the server's key.
pub fn rsa_encrypt_password(
    password: &[u8],
    nonce: &[u8],
    public_key_pem: &[u8],
) -> Result<Vec<u8>, String> {
    let key = parse_public_key(public_key_pem)?;
    let nonce = nonce_20(nonce);
    if nonce.is_empty() {
        return Err("the server sent no nonce to mix the password with".to_string());
    }
    let mut plain: Vec<u8> = password.to_vec();
    plain.push(0);
    for (i, b) in plain.iter_mut().enumerate() {
        *b ^= nonce[i % nonce.len()];
    }
    key.encrypt(&mut rsa::rand_core::OsRng, Oaep::new::<Sha1>(), &plain)
        .map_err(|e| format!("cannot encrypt the password with the server's RSA key: {e}"))
}

/// The server's key: PEM, as SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`, what MySQL sends) or
/// PKCS#1 (`BEGIN RSA PUBLIC KEY`).
fn parse_public_key(pem: &[u8]) -> Result<RsaPublicKey, String> {
    let text = std::str::from_utf8(pem)
        .map_err(|_| "the server's public key is not PEM text".to_string())?
        .trim_matches(|c: char| c == '\0' || c.is_whitespace());
    RsaPublicKey::from_public_key_pem(text)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(text))
        .map_err(|e| format!("cannot read the server's RSA public key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::RsaPrivateKey;

    const NONCE: &[u8; 20] = b"abcdefghijklmnopqrst";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // The expected values come from an independent implementation (Python's hashlib):
    //   s1 = sha1(pw); sha1(nonce + sha1(s1)) XOR s1
    //   s1 = sha256(pw); sha256(sha256(s1) + nonce) XOR s1

    #[test]
    fn native_password_scramble() {
        assert_eq!(
            hex(&native_password(b"secret", NONCE)),
            "8817c50fa779daef010ee7577825b0847df9842e"
        );
        assert!(native_password(b"", NONCE).is_empty());
    }

    #[test]
    fn caching_sha2_scramble() {
        assert_eq!(
            hex(&caching_sha2_password(b"secret", NONCE)),
            "c76e2898612a4cf042c77fa8c4702c4c64c0c2c557c53c4d75595aaa6abae809"
        );
        assert!(caching_sha2_password(b"", NONCE).is_empty());
    }

    /// A 2048-bit key made with `openssl genpkey -algorithm RSA` for these tests only.
    pub(crate) const TEST_PRIVATE_KEY: &str = include_str!("testdata/rsa_private.pem");
    pub(crate) const TEST_PUBLIC_KEY: &str = include_str!("testdata/rsa_public.pem");

    #[test]
    fn rsa_step_decrypts_to_password_xor_nonce() {
        let private = RsaPrivateKey::from_pkcs8_pem(TEST_PRIVATE_KEY).unwrap();
        let cipher = rsa_encrypt_password(b"secret", NONCE, TEST_PUBLIC_KEY.as_bytes()).unwrap();
        assert_eq!(cipher.len(), 256);
        let plain = private.decrypt(Oaep::new::<Sha1>(), &cipher).unwrap();
        let expected: Vec<u8> = b"secret\0"
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ NONCE[i % 20])
            .collect();
        assert_eq!(plain, expected);
    }

    #[test]
    fn rsa_step_reads_pkcs1_keys_and_refuses_garbage() {
        let private = RsaPrivateKey::from_pkcs8_pem(TEST_PRIVATE_KEY).unwrap();
        let pkcs1 = rsa::pkcs1::EncodeRsaPublicKey::to_pkcs1_pem(
            &private.to_public_key(),
            rsa::pkcs1::LineEnding::LF,
        )
        .unwrap();
        assert!(rsa_encrypt_password(b"x", NONCE, pkcs1.as_bytes()).is_ok());
        assert!(rsa_encrypt_password(b"x", NONCE, b"-----BEGIN PUBLIC KEY-----\nAAAA\n").is_err());
        assert!(rsa_encrypt_password(b"x", NONCE, &[0xff, 0xfe]).is_err());
        assert!(rsa_encrypt_password(b"x", b"", TEST_PUBLIC_KEY.as_bytes()).is_err());
    }
}
