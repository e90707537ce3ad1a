//! The backup file format, version 1: what `berth backup` writes and `berth restore` reads.
//!
//! ```text
//! age file (scrypt passphrase recipient, https://age-encryption.org/v1), whose plaintext is:
//!   berth-backup/1\n                  magic and format version
//!   {header JSON}\n                   BackupHeader: when, where, membership, counts, checksum
//!   sha256:<hex>\n ...                the referenced blob digests, sorted, one a line
//!   <SQLite database>                 a VACUUM INTO copy of state.db
//! ```
//!
//! age authenticates the whole stream in 64 KiB chunks and detects truncation at its end, so
//! a wrong passphrase, a flipped byte or a cut-off file fails to decrypt; the header's
//! `payload_sha256` (over the blob list and the database) is checked too, and is the only
//! check of a file written with `--no-encryption` (the same plaintext, without age, whose
//! header is only parsed).
//! A reader refuses a format version newer than [`FORMAT_VERSION`] before reading further.
//! No file system or database work here: sections are plain readers and writers, so memory
//! stays bounded whatever the size of the metadata.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};

use age::secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::BackupError;

/// The format version this Berth writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// The plaintext starts with this, followed by the version and a newline.
const MAGIC_PREFIX: &[u8] = b"berth-backup/";
/// Every age file starts with this.
const AGE_PREFIX: &[u8] = b"age-encryption.org/";
/// scrypt work factor of new backups: N = 2^17, r = 8 (128 MiB, about half a second), the
/// OWASP recommendation; age's own default targets one second of the writing machine.
pub(crate) const SCRYPT_LOG_N: u8 = 17;
/// The largest work factor a reader accepts (N = 2^20: 1 GiB), so that a crafted file cannot
/// make a restore run for hours.
const MAX_SCRYPT_LOG_N: u8 = 20;
/// The header is small (counts and the membership); a longer line is not a backup.
const MAX_HEADER_BYTES: u64 = 1 << 20;
/// Shortest passphrase accepted for a new backup.
pub const MIN_PASSPHRASE_CHARS: usize = 12;
/// Copy buffer of the sections.
const COPY_BUFFER_BYTES: usize = 64 * 1024;

/// A backup passphrase. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Passphrase(SecretString);

impl Passphrase {
    /// A passphrase for reading a backup.
    ///
    /// # Errors
    /// [`BackupError::WeakPassphrase`] when it is empty.
    pub fn new(passphrase: String) -> Result<Passphrase, BackupError> {
        if passphrase.is_empty() {
            return Err(BackupError::WeakPassphrase(MIN_PASSPHRASE_CHARS));
        }
        Ok(Passphrase(SecretString::from(passphrase)))
    }

    /// A passphrase for writing a new backup: at least [`MIN_PASSPHRASE_CHARS`] characters.
    ///
    /// # Errors
    /// [`BackupError::WeakPassphrase`] when it is shorter.
    pub fn for_writing(passphrase: String) -> Result<Passphrase, BackupError> {
        if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
            return Err(BackupError::WeakPassphrase(MIN_PASSPHRASE_CHARS));
        }
        Ok(Passphrase(SecretString::from(passphrase)))
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// How a backup is (or was) protected.
#[derive(Debug, Clone)]
pub enum Encryption {
    /// age with an scrypt passphrase recipient.
    Passphrase(Passphrase),
    /// No encryption: only for an operator who asked for it explicitly.
    None,
}

/// A replica in the membership the backup was taken from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupMember {
    /// Its replica id.
    pub id: u64,
    /// Its base URL.
    pub address: String,
    /// Whether it voted (else a learner).
    pub voter: bool,
}

/// A Raft log id, spelled out (the file format does not depend on openraft's serde).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupLogId {
    /// Term of the leader that wrote the entry.
    pub term: u64,
    /// Id of that leader.
    pub node_id: u64,
    /// Index of the entry.
    pub index: u64,
}

/// What a backup says about itself, readable once it is decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// The format version of the file ([`FORMAT_VERSION`] when written by this Berth).
    pub format_version: u32,
    /// When the copy was taken, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// The same, RFC 3339 UTC, for people.
    pub created_at: String,
    /// The version of the Berth that wrote it.
    pub berth_version: String,
    /// The cluster it was taken from.
    pub cluster_id: String,
    /// The replica that made the copy.
    pub replica_id: u64,
    /// The last log entry the copy includes.
    pub last_applied: BackupLogId,
    /// The membership the copy records.
    pub membership: Vec<BackupMember>,
    /// The highest schema migration applied to the copy.
    pub schema_version: i64,
    /// Rows per table in the copy (every table, whatever the schema holds).
    pub tables: BTreeMap<String, u64>,
    /// How many blob digests the copy references.
    pub blob_count: u64,
    /// Length of the blob list section, bytes.
    pub blob_list_bytes: u64,
    /// Length of the database section, bytes.
    pub database_bytes: u64,
    /// Lowercase hex SHA-256 of the blob list and database sections, in that order.
    pub payload_sha256: String,
}

impl BackupHeader {
    /// Rows in all tables.
    pub fn rows(&self) -> u64 {
        self.tables.values().sum()
    }

    /// Bytes after the header: the blob list and the database.
    pub fn payload_bytes(&self) -> u64 {
        self.blob_list_bytes + self.database_bytes
    }
}

/// Writes a whole backup to `out`: age around the plaintext unless `encryption` is `None`.
/// `log_n` is the scrypt work factor ([`SCRYPT_LOG_N`] outside tests). Answers `out` once
/// everything is written (age's last chunk included); the caller flushes it.
///
/// # Errors
/// Writing fails, or a section's length differs from the header's.
pub(crate) fn write_backup<W: Write>(
    out: W,
    encryption: &Encryption,
    log_n: u8,
    header: &BackupHeader,
    blobs: impl Read,
    database: impl Read,
) -> io::Result<W> {
    match encryption {
        Encryption::None => {
            let mut out = out;
            write_plaintext(&mut out, header, blobs, database)?;
            Ok(out)
        }
        Encryption::Passphrase(passphrase) => {
            let mut recipient = age::scrypt::Recipient::new(passphrase.0.clone());
            recipient.set_work_factor(log_n);
            let encryptor =
                age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                    .map_err(io::Error::other)?;
            let mut sealed = encryptor.wrap_output(out)?;
            write_plaintext(&mut sealed, header, blobs, database)?;
            sealed.finish()
        }
    }
}

fn write_plaintext(
    out: &mut impl Write,
    header: &BackupHeader,
    blobs: impl Read,
    database: impl Read,
) -> io::Result<()> {
    out.write_all(MAGIC_PREFIX)?;
    writeln!(out, "{}", header.format_version)?;
    serde_json::to_writer(&mut *out, header)?;
    out.write_all(b"\n")?;
    for (name, section, len) in [
        (
            "blob list",
            Box::new(blobs) as Box<dyn Read>,
            header.blob_list_bytes,
        ),
        ("database", Box::new(database), header.database_bytes),
    ] {
        let copied = io::copy(&mut section.take(len), out)?;
        if copied != len {
            return Err(io::Error::other(format!(
                "the {name} changed while it was written: {copied} bytes instead of {len}"
            )));
        }
    }
    Ok(())
}

/// A backup being read: its header is known; the sections follow, then [`finish`].
///
/// [`finish`]: BackupReader::finish
pub(crate) struct BackupReader {
    plaintext: BufReader<Box<dyn Read + Send>>,
    header: BackupHeader,
    hasher: Sha256,
}

impl fmt::Debug for BackupReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupReader")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// Opens a backup: decrypts it (when it is an age file), reads and checks the magic, the
/// format version and the header.
///
/// # Errors
/// [`BackupError::NeedsPassphrase`] / [`BackupError::NotEncrypted`] when `encryption` does not
/// match the file, [`BackupError::WrongPassphrase`], [`BackupError::NotABackup`],
/// [`BackupError::NewerFormat`], [`BackupError::Damaged`] / [`BackupError::Truncated`].
pub(crate) fn open_backup(
    input: impl Read + Send + 'static,
    encryption: &Encryption,
) -> Result<BackupReader, BackupError> {
    // The first bytes say what the file is; they are read again by the decoder below.
    let mut input = input;
    let mut start = Vec::with_capacity(AGE_PREFIX.len());
    (&mut input)
        .take(AGE_PREFIX.len() as u64)
        .read_to_end(&mut start)?;
    let input = BufReader::new(io::Cursor::new(start.clone()).chain(input));
    let encrypted = start.starts_with(AGE_PREFIX);
    let plaintext: Box<dyn Read + Send> = match (encrypted, encryption) {
        (true, Encryption::Passphrase(passphrase)) => {
            let decryptor = age::Decryptor::new_buffered(input).map_err(decrypt_error)?;
            if !decryptor.is_scrypt() {
                return Err(BackupError::NotABackup(
                    "an age file that is not encrypted with a passphrase".to_owned(),
                ));
            }
            let mut identity = age::scrypt::Identity::new(passphrase.0.clone());
            identity.set_max_work_factor(MAX_SCRYPT_LOG_N);
            let reader = decryptor
                .decrypt(std::iter::once(&identity as &dyn age::Identity))
                .map_err(decrypt_error)?;
            Box::new(reader)
        }
        (true, Encryption::None) => return Err(BackupError::NeedsPassphrase),
        (false, Encryption::Passphrase(_)) if start.starts_with(MAGIC_PREFIX) => {
            return Err(BackupError::NotEncrypted)
        }
        (false, Encryption::None) if start.starts_with(MAGIC_PREFIX) => Box::new(input),
        (false, _) => {
            return Err(BackupError::NotABackup(
                "neither an age file nor a plain Berth backup".to_owned(),
            ))
        }
    };
    let mut plaintext = BufReader::with_capacity(COPY_BUFFER_BYTES, plaintext);

    let magic = read_line(&mut plaintext, 64, "format line")?;
    let version = magic
        .strip_prefix(MAGIC_PREFIX)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|v| *v > 0)
        .ok_or_else(|| BackupError::NotABackup("no Berth backup format line".to_owned()))?;
    if version > FORMAT_VERSION {
        return Err(BackupError::NewerFormat {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let line = read_line(&mut plaintext, MAX_HEADER_BYTES, "header")?;
    let header: BackupHeader = serde_json::from_slice(&line)
        .map_err(|e| BackupError::Damaged(format!("the header is not readable: {e}")))?;
    if header.format_version != version {
        return Err(BackupError::Damaged(format!(
            "the header says format {} but the file format {version}",
            header.format_version
        )));
    }
    Ok(BackupReader {
        plaintext,
        header,
        hasher: Sha256::new(),
    })
}

impl BackupReader {
    /// The header, checked for its version.
    pub(crate) fn header(&self) -> &BackupHeader {
        &self.header
    }

    /// Copies the blob list section to `out`; `progress` hears the bytes copied so far.
    pub(crate) fn copy_blob_list(
        &mut self,
        out: &mut impl Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), BackupError> {
        let len = self.header.blob_list_bytes;
        self.copy_section(len, out, progress)
    }

    /// Copies the database section to `out`; `progress` hears the bytes copied so far.
    pub(crate) fn copy_database(
        &mut self,
        out: &mut impl Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), BackupError> {
        let len = self.header.database_bytes;
        self.copy_section(len, out, progress)
    }

    fn copy_section(
        &mut self,
        len: u64,
        out: &mut impl Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), BackupError> {
        let mut buf = vec![0u8; COPY_BUFFER_BYTES];
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let n = match self.plaintext.read(&mut buf[..want]) {
                Ok(0) => return Err(BackupError::Truncated),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e)),
            };
            self.hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            left -= n as u64;
            progress(n as u64);
        }
        Ok(())
    }

    /// Reads to the end (where age checks that the file was not cut short), refuses trailing
    /// data, and compares the payload checksum with the header's.
    pub(crate) fn finish(mut self) -> Result<BackupHeader, BackupError> {
        let mut probe = [0u8; 1];
        loop {
            match self.plaintext.read(&mut probe) {
                Ok(0) => break,
                Ok(_) => {
                    return Err(BackupError::Damaged(
                        "data follows the end of the database".to_owned(),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(e)),
            }
        }
        let sum = hex::encode(self.hasher.finalize());
        if sum != self.header.payload_sha256 {
            return Err(BackupError::Damaged(format!(
                "checksum mismatch: the content hashes to {sum}, the header says {}",
                self.header.payload_sha256
            )));
        }
        Ok(self.header)
    }
}

/// Reads one line of at most `max` bytes (without its newline).
fn read_line(input: &mut impl BufRead, max: u64, what: &str) -> Result<Vec<u8>, BackupError> {
    let mut line = Vec::new();
    input
        .take(max + 1)
        .read_until(b'\n', &mut line)
        .map_err(read_error)?;
    match line.pop() {
        Some(b'\n') => Ok(line),
        _ if line.len() as u64 >= max => Err(BackupError::NotABackup(format!(
            "the {what} is longer than {max} bytes"
        ))),
        _ => Err(BackupError::Truncated),
    }
}

/// What an I/O error while reading the (decrypted) stream means.
fn read_error(e: io::Error) -> BackupError {
    match e.kind() {
        // age: a chunk failed authentication (altered) or the last one is missing (cut).
        io::ErrorKind::InvalidData => BackupError::Damaged(format!(
            "authentication failed ({e}): the file was altered, damaged or cut short"
        )),
        io::ErrorKind::UnexpectedEof => BackupError::Truncated,
        _ => BackupError::Io(e),
    }
}

fn decrypt_error(e: age::DecryptError) -> BackupError {
    use age::DecryptError as D;
    match e {
        D::DecryptionFailed | D::KeyDecryptionFailed | D::NoMatchingKeys => {
            BackupError::WrongPassphrase
        }
        D::InvalidMac => BackupError::Damaged(
            "the encryption header failed authentication: the file was altered or damaged"
                .to_owned(),
        ),
        D::ExcessiveWork { required, .. } => BackupError::Damaged(format!(
            "the file asks for an scrypt work factor of 2^{required}, more than Berth accepts"
        )),
        D::Io(e) => read_error(e),
        // InvalidHeader, UnknownFormat, and whatever later versions of age add.
        _ => BackupError::Damaged("the encryption header is not readable".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cheap work factor: these tests exercise the format, not scrypt.
    const TEST_LOG_N: u8 = 10;

    fn passphrase() -> Encryption {
        Encryption::Passphrase(Passphrase::for_writing("correct horse battery".to_owned()).unwrap())
    }

    fn sample() -> (BackupHeader, Vec<u8>, Vec<u8>) {
        let blobs = format!("sha256:{}\nsha256:{}\n", "a".repeat(64), "b".repeat(64)).into_bytes();
        // More than one age chunk (64 KiB), so that damage in a middle chunk is covered.
        let database: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut hasher = Sha256::new();
        hasher.update(&blobs);
        hasher.update(&database);
        let header = BackupHeader {
            format_version: FORMAT_VERSION,
            created_at_ms: 1_700_000_000_000,
            created_at: "2023-11-14T22:13:20.000Z".to_owned(),
            berth_version: "0.1.0".to_owned(),
            cluster_id: "c0ffee".to_owned(),
            replica_id: 2,
            last_applied: BackupLogId {
                term: 3,
                node_id: 1,
                index: 42,
            },
            membership: vec![BackupMember {
                id: 1,
                address: "http://10.0.0.1:5000".to_owned(),
                voter: true,
            }],
            schema_version: 20_261_127_000_000,
            tables: BTreeMap::from([("tags".to_owned(), 7), ("users".to_owned(), 1)]),
            blob_count: 2,
            blob_list_bytes: blobs.len() as u64,
            database_bytes: database.len() as u64,
            payload_sha256: hex::encode(hasher.finalize()),
        };
        (header, blobs, database)
    }

    fn write(encryption: &Encryption, header: &BackupHeader, blobs: &[u8], db: &[u8]) -> Vec<u8> {
        write_backup(Vec::new(), encryption, TEST_LOG_N, header, blobs, db).unwrap()
    }

    /// Reads a whole backup back: header, blob list, database.
    fn read(
        file: Vec<u8>,
        encryption: &Encryption,
    ) -> Result<(BackupHeader, Vec<u8>, Vec<u8>), BackupError> {
        let mut reader = open_backup(io::Cursor::new(file), encryption)?;
        let (mut blobs, mut db) = (Vec::new(), Vec::new());
        let mut seen = 0;
        reader.copy_blob_list(&mut blobs, &mut |n| seen += n)?;
        reader.copy_database(&mut db, &mut |n| seen += n)?;
        let header = reader.finish()?;
        assert_eq!(seen, header.payload_bytes());
        Ok((header, blobs, db))
    }

    #[test]
    fn an_encrypted_backup_reads_back_exactly() {
        let (header, blobs, db) = sample();
        let file = write(&passphrase(), &header, &blobs, &db);
        assert!(file.starts_with(b"age-encryption.org/v1\n"));
        // Nothing of the plaintext shows through.
        assert!(!file.windows(12).any(|w| w == b"berth-backup"));
        assert!(!file.windows(6).any(|w| w == b"c0ffee"));
        assert_eq!(read(file, &passphrase()).unwrap(), (header, blobs, db));
    }

    #[test]
    fn the_default_work_factor_is_written_and_accepted() {
        let (header, blobs, db) = sample();
        let file = write_backup(
            Vec::new(),
            &passphrase(),
            SCRYPT_LOG_N,
            &header,
            &blobs[..],
            &db[..],
        )
        .unwrap();
        let stanza = String::from_utf8_lossy(&file[..200]).into_owned();
        assert!(stanza.contains("-> scrypt "), "{stanza}");
        assert!(stanza.contains(&format!(" {SCRYPT_LOG_N}\n")), "{stanza}");
        assert!(read(file, &passphrase()).is_ok());
    }

    #[test]
    fn an_unencrypted_backup_reads_back_only_when_asked_for() {
        let (header, blobs, db) = sample();
        let file = write(&Encryption::None, &header, &blobs, &db);
        assert!(file.starts_with(b"berth-backup/1\n{"));
        assert_eq!(
            read(file.clone(), &Encryption::None).unwrap(),
            (header, blobs, db)
        );
        assert!(matches!(
            read(file, &passphrase()),
            Err(BackupError::NotEncrypted)
        ));
    }

    #[test]
    fn an_encrypted_backup_needs_its_passphrase() {
        let (header, blobs, db) = sample();
        let file = write(&passphrase(), &header, &blobs, &db);
        assert!(matches!(
            read(file.clone(), &Encryption::None),
            Err(BackupError::NeedsPassphrase)
        ));
        let wrong = Encryption::Passphrase(Passphrase::new("wrong horse".to_owned()).unwrap());
        assert!(matches!(
            read(file, &wrong),
            Err(BackupError::WrongPassphrase)
        ));
    }

    #[test]
    fn every_truncation_is_detected() {
        let (header, blobs, db) = sample();
        for encryption in [passphrase(), Encryption::None] {
            let file = write(&encryption, &header, &blobs, &db);
            // Inside the header, inside the payload, on age's chunk boundaries, one byte short.
            let cuts = [
                0,
                10,
                100,
                file.len() / 2,
                64 * 1024,
                64 * 1024 + 16,
                file.len() - 17,
                file.len() - 1,
            ];
            for cut in cuts {
                let result = read(file[..cut].to_vec(), &encryption);
                assert!(
                    matches!(
                        result,
                        Err(BackupError::Truncated
                            | BackupError::Damaged(_)
                            | BackupError::NotABackup(_))
                    ),
                    "cut at {cut} of {}: {result:?}",
                    file.len()
                );
            }
        }
    }

    #[test]
    fn a_flipped_byte_anywhere_is_detected() {
        let (header, blobs, db) = sample();
        for encryption in [passphrase(), Encryption::None] {
            let file = write(&encryption, &header, &blobs, &db);
            // age authenticates every byte; without it only the payload has a checksum (the
            // header of an unencrypted file is only parsed).
            let first = match encryption {
                Encryption::None => header_end(&file),
                Encryption::Passphrase(_) => 0,
            };
            let step = (file.len() - first) / 97;
            for at in (first..file.len()).step_by(step).chain([file.len() - 1]) {
                let mut altered = file.clone();
                altered[at] ^= 0x01;
                let result = read(altered, &encryption);
                assert!(
                    result.is_err(),
                    "flip at {at} of {} was not detected",
                    file.len()
                );
            }
        }
    }

    /// Offset of the first payload byte of an unencrypted file.
    fn header_end(file: &[u8]) -> usize {
        let magic = file.iter().position(|b| *b == b'\n').unwrap() + 1;
        magic + file[magic..].iter().position(|b| *b == b'\n').unwrap() + 1
    }

    #[test]
    fn an_altered_unencrypted_payload_fails_its_checksum() {
        let (header, blobs, db) = sample();
        let mut file = write(&Encryption::None, &header, &blobs, &db);
        let last = file.len() - 1;
        file[last] ^= 0xff;
        match read(file, &Encryption::None) {
            Err(BackupError::Damaged(why)) => assert!(why.contains("checksum"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_newer_format_is_refused_before_its_header_is_read() {
        let (header, blobs, db) = sample();
        let mut plain = write(&Encryption::None, &header, &blobs, &db);
        plain[b"berth-backup/".len()] = b'2';
        let mut newer = header.clone();
        newer.format_version = 2;
        let result = read(plain.clone(), &Encryption::None);
        assert!(
            matches!(
                result,
                Err(BackupError::NewerFormat {
                    found: 2,
                    supported: 1
                })
            ),
            "{result:?}"
        );
        // The same inside age.
        let mut sealed = age::Encryptor::with_user_passphrase(SecretString::from(
            "correct horse battery".to_owned(),
        ))
        .wrap_output(Vec::new())
        .unwrap();
        sealed.write_all(&plain).unwrap();
        let file = sealed.finish().unwrap();
        assert!(matches!(
            read(file, &passphrase()),
            Err(BackupError::NewerFormat { found: 2, .. })
        ));
    }

    #[test]
    fn trailing_data_and_wrong_lengths_are_refused() {
        let (header, blobs, db) = sample();
        let mut file = write(&Encryption::None, &header, &blobs, &db);
        file.push(b'x');
        assert!(matches!(
            read(file, &Encryption::None),
            Err(BackupError::Damaged(_))
        ));
        // A section shorter than the header says cannot be written at all.
        let short = write_backup(
            Vec::new(),
            &Encryption::None,
            TEST_LOG_N,
            &header,
            &blobs[..],
            &db[..10],
        );
        assert!(short.is_err());
    }

    #[test]
    fn other_input_is_not_a_backup() {
        for input in [&b""[..], b"hello", b"SQLite format 3\0 and more bytes"] {
            let result = read(input.to_vec(), &Encryption::None);
            assert!(
                matches!(result, Err(BackupError::NotABackup(_))),
                "{result:?}"
            );
        }
    }

    #[test]
    fn passphrases_are_checked_and_never_printed() {
        assert!(Passphrase::for_writing("short".to_owned()).is_err());
        assert!(Passphrase::new(String::new()).is_err());
        assert!(Passphrase::new("short".to_owned()).is_ok());
        let p = Passphrase::for_writing("correct horse battery".to_owned()).unwrap();
        assert!(!format!("{p:?}").contains("horse"));
    }
}
