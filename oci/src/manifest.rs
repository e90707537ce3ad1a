//! Parsing and validating a pushed manifest body (distribution spec end-7) as an OCI image
//! manifest or index (image-spec v1.1) or a Docker schema 2 manifest or manifest list.
//!
//! Validation here is structural only: JSON shape, media types, descriptors. Whether the
//! referenced blobs and manifests exist (`MANIFEST_BLOB_UNKNOWN`) is the registry's check, and
//! the manifest's own digest is `Digest::sha256_of(body)` over the exact bytes received.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::media_type::{
    essence, is_valid_media_type, manifest_kind, ManifestKind, DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_V1, OCI_INDEX, OCI_MANIFEST,
};
use crate::{Digest, Excerpt};

/// A content descriptor (image-spec `descriptor.md`): what a manifest says about a blob or
/// another manifest. Unknown fields (`platform`, `data`, …) are ignored when deserializing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size of the referenced content in bytes.
    pub size: u64,
    /// Locations the content may also be fetched from (foreign layers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Arbitrary string metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The artifact type of the referenced manifest, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// A manifest that passed [`parse_manifest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedManifest {
    /// The effective media type: the document's `mediaType`, else the `Content-Type`, else
    /// inferred from the document's fields. Serve it back as the `Content-Type`.
    pub media_type: String,
    /// Whether this is an image manifest or an index.
    pub kind: ManifestKind,
    /// The config descriptor (images only).
    pub config: Option<Descriptor>,
    /// The layers, in order (images only; may be empty).
    pub layers: Vec<Descriptor>,
    /// The referenced manifests (indexes only; may be empty).
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to (referrers API).
    pub subject: Option<Descriptor>,
    /// `artifactType`, else for images `config.mediaType`, as the referrers API (end-12a)
    /// reports it.
    pub artifact_type: Option<String>,
    /// Top-level annotations (empty when absent).
    pub annotations: BTreeMap<String, String>,
}

/// Why a manifest body was rejected. Messages name the offending field but never echo more
/// than a short excerpt of the body.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ManifestError {
    /// The body is not JSON.
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    /// The body is JSON but not an object.
    #[error("manifest must be a JSON object")]
    NotAnObject,
    /// `schemaVersion` is missing or not 2.
    #[error("manifest schemaVersion must be 2")]
    SchemaVersion,
    /// The document's `mediaType` and the request's `Content-Type` disagree.
    #[error(
        "manifest mediaType {} does not match the Content-Type {}",
        Excerpt(.document),
        Excerpt(.content_type)
    )]
    MediaTypeMismatch {
        /// The document's `mediaType`.
        document: String,
        /// The `Content-Type` without parameters.
        content_type: String,
    },
    /// The media type is not one Berth stores as a manifest (Docker schema 1, anything else).
    #[error("unsupported manifest media type {}", Excerpt(.0))]
    Unsupported(String),
    /// The document has `manifests` and also `config` or `layers`, so it is neither an image
    /// nor an index.
    #[error(
        "manifest has both `manifests` and `config`/`layers`; it must be an image or an index"
    )]
    Ambiguous,
    /// Neither `mediaType` nor `Content-Type` is given, and there is no `config` or
    /// `manifests` to infer the type from.
    #[error(
        "manifest has no mediaType or Content-Type, and no `config` or `manifests` to infer one"
    )]
    UnknownMediaType,
    /// A field is missing or malformed.
    #[error("manifest field `{path}` {reason}")]
    Invalid {
        /// JSON path of the field, like `layers[2].digest`.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Parses and validates a manifest body pushed with `content_type` (the request's
/// `Content-Type` header, parameters allowed).
///
/// Rules: the body is a JSON object with `schemaVersion: 2`. The effective media type is the
/// document's `mediaType`, else the `Content-Type`, else `OCI_MANIFEST` when the document has
/// `config` and `OCI_INDEX` when it has `manifests`; when both `mediaType` and `Content-Type`
/// are given they must agree (ASCII case-insensitively). Docker schema 2 types must be named in
/// the document's `mediaType`. Images need a `config` descriptor and a `layers` array (possibly
/// empty); indexes need a `manifests` array. Every descriptor needs a valid `mediaType`, a
/// supported `digest` and a non-negative integer `size`. An empty `Content-Type` counts as
/// absent, and `null` fields count as missing.
///
/// # Errors
/// [`ManifestError::Unsupported`] for media types Berth does not store (callers answer
/// `UNSUPPORTED` or `MANIFEST_INVALID`); every other variant means `MANIFEST_INVALID`.
pub fn parse_manifest(
    body: &[u8],
    content_type: Option<&str>,
) -> Result<ParsedManifest, ManifestError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ManifestError::Json(e.to_string()))?;
    let Value::Object(doc) = value else {
        return Err(ManifestError::NotAnObject);
    };

    let document_type = optional_str(&doc, "mediaType")?;
    let content_type = content_type.map(essence).filter(|ct| !ct.is_empty());
    if let (Some(document), Some(content_type)) = (document_type, content_type) {
        if !document.eq_ignore_ascii_case(content_type) {
            return Err(ManifestError::MediaTypeMismatch {
                document: document.to_owned(),
                content_type: content_type.to_owned(),
            });
        }
    }
    let declared = document_type
        .map(str::to_owned)
        .or_else(|| content_type.map(str::to_ascii_lowercase));
    if let Some(declared) = &declared {
        if manifest_kind(declared).is_none() {
            return Err(ManifestError::Unsupported(declared.clone()));
        }
    }

    let has_manifests = field(&doc, "manifests").is_some();
    if has_manifests && (field(&doc, "config").is_some() || field(&doc, "layers").is_some()) {
        return Err(ManifestError::Ambiguous);
    }
    let schema_version = field(&doc, "schemaVersion").and_then(Value::as_u64);
    let media_type = match declared {
        Some(declared) => declared,
        // A schema 1 manifest pushed without a Content-Type still deserves the precise error.
        None if schema_version == Some(1) => {
            return Err(ManifestError::Unsupported(DOCKER_MANIFEST_V1.to_owned()))
        }
        None if field(&doc, "config").is_some() => OCI_MANIFEST.to_owned(),
        None if has_manifests => OCI_INDEX.to_owned(),
        None => return Err(ManifestError::UnknownMediaType),
    };
    if schema_version != Some(2) {
        return Err(ManifestError::SchemaVersion);
    }
    if document_type.is_none()
        && (media_type == DOCKER_MANIFEST || media_type == DOCKER_MANIFEST_LIST)
    {
        return Err(invalid(
            "mediaType",
            "is required in Docker schema 2 manifests",
        ));
    }
    let kind =
        manifest_kind(&media_type).ok_or_else(|| ManifestError::Unsupported(media_type.clone()))?;

    let (config, layers, manifests) = match kind {
        ManifestKind::Image => {
            let config = descriptor(required(&doc, "config")?, Loc::Field("config"))?;
            let layers = descriptors(required(&doc, "layers")?, "layers")?;
            (Some(config), layers, Vec::new())
        }
        ManifestKind::Index => (
            None,
            Vec::new(),
            descriptors(required(&doc, "manifests")?, "manifests")?,
        ),
    };
    let subject = field(&doc, "subject")
        .map(|v| descriptor(v, Loc::Field("subject")))
        .transpose()?;
    let artifact_type = optional_media_type(&doc, "artifactType")?
        .or_else(|| config.as_ref().map(|c| c.media_type.clone()));
    let annotations =
        string_map(doc.get("annotations"), || "annotations".to_owned())?.unwrap_or_default();

    Ok(ParsedManifest {
        media_type,
        kind,
        config,
        layers,
        manifests,
        subject,
        artifact_type,
        annotations,
    })
}

/// Where a descriptor sits in the document, for error messages; formatted only on error.
#[derive(Clone, Copy)]
enum Loc {
    /// A top-level field.
    Field(&'static str),
    /// An element of a top-level array.
    Item(&'static str, usize),
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(name) => f.write_str(name),
            Self::Item(name, index) => write!(f, "{name}[{index}]"),
        }
    }
}

fn invalid(path: impl fmt::Display, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// A field's value, treating `null` as missing.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn required<'a>(
    obj: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a Value, ManifestError> {
    field(obj, name).ok_or_else(|| invalid(name, "is required"))
}

fn optional_str<'a>(
    obj: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, ManifestError> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(name, "must be a string")),
    }
}

/// An optional media-type field; an empty string counts as absent (the referrers API treats
/// an empty `artifactType` like a missing one).
fn optional_media_type(
    obj: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, ManifestError> {
    match optional_str(obj, name)? {
        None | Some("") => Ok(None),
        Some(s) if is_valid_media_type(s) => Ok(Some(s.to_owned())),
        Some(_) => Err(invalid(name, "is not a valid media type")),
    }
}

/// An optional object of strings, such as `annotations`; `path` names it in the error.
fn string_map(
    value: Option<&Value>,
    path: impl FnOnce() -> String,
) -> Result<Option<BTreeMap<String, String>>, ManifestError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    value
        .as_object()
        .and_then(|map| {
            map.iter()
                .map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect::<Option<BTreeMap<_, _>>>()
        })
        .map(Some)
        .ok_or_else(|| invalid(path(), "must be an object of strings"))
}

fn descriptors(value: &Value, name: &'static str) -> Result<Vec<Descriptor>, ManifestError> {
    let Value::Array(items) = value else {
        return Err(invalid(Loc::Field(name), "must be an array of descriptors"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| descriptor(item, Loc::Item(name, i)))
        .collect()
}

fn descriptor(value: &Value, loc: Loc) -> Result<Descriptor, ManifestError> {
    let at = |name: &'static str| format!("{loc}.{name}");
    let Value::Object(obj) = value else {
        return Err(invalid(loc, "must be a descriptor object"));
    };
    let media_type = match obj.get("mediaType") {
        Some(Value::String(s)) if is_valid_media_type(s) => s.clone(),
        Some(Value::String(_)) => {
            return Err(invalid(at("mediaType"), "is not a valid media type"))
        }
        None | Some(Value::Null) => return Err(invalid(at("mediaType"), "is required")),
        Some(_) => return Err(invalid(at("mediaType"), "must be a string")),
    };
    let digest = match obj.get("digest") {
        Some(Value::String(s)) => {
            Digest::parse(s).map_err(|e| invalid(at("digest"), format!("is not valid: {e}")))?
        }
        None | Some(Value::Null) => return Err(invalid(at("digest"), "is required")),
        Some(_) => return Err(invalid(at("digest"), "must be a string")),
    };
    // image-spec: size is an int64, so Go clients cannot represent more.
    let size = match obj.get("size") {
        None | Some(Value::Null) => return Err(invalid(at("size"), "is required")),
        Some(v) => v
            .as_u64()
            .filter(|&n| i64::try_from(n).is_ok())
            .ok_or_else(|| invalid(at("size"), "must be an integer from 0 to 2^63-1"))?,
    };
    let urls = match obj.get("urls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|u| u.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid(at("urls"), "must be an array of strings"))?,
        Some(_) => return Err(invalid(at("urls"), "must be an array of strings")),
    };
    let annotations = string_map(obj.get("annotations"), || at("annotations"))?;
    let artifact_type = match obj.get("artifactType") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if is_valid_media_type(s) => Some(s.clone()),
        Some(Value::String(_)) => {
            return Err(invalid(at("artifactType"), "is not a valid media type"))
        }
        Some(_) => return Err(invalid(at("artifactType"), "must be a string")),
    };
    Ok(Descriptor {
        media_type,
        digest,
        size,
        urls,
        annotations,
        artifact_type,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::media_type::{DOCKER_MANIFEST_V1_SIGNED, OCI_EMPTY};

    const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

    fn desc(media_type: &str, content: &str) -> Value {
        json!({
            "mediaType": media_type,
            "digest": Digest::sha256_of(content.as_bytes()).to_string(),
            "size": content.len(),
        })
    }

    fn oci_image() -> Value {
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": desc(OCI_CONFIG, "config"),
            "layers": [desc(OCI_LAYER, "layer0"), desc(OCI_LAYER, "layer1")],
            "annotations": { "org.opencontainers.image.created": "2024-01-01T00:00:00Z" },
        })
    }

    fn oci_index() -> Value {
        let mut amd64 = desc(OCI_MANIFEST, "amd64");
        amd64["platform"] = json!({ "architecture": "amd64", "os": "linux" });
        let mut arm64 = desc(OCI_MANIFEST, "arm64");
        arm64["platform"] = json!({ "architecture": "arm64", "os": "linux", "variant": "v8" });
        json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd64, arm64] })
    }

    fn docker_image() -> Value {
        json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": desc(DOCKER_CONFIG, "config"),
            "layers": [desc(DOCKER_LAYER, "layer0")],
        })
    }

    fn docker_list() -> Value {
        json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST_LIST,
            "manifests": [desc(DOCKER_MANIFEST, "amd64")],
        })
    }

    fn artifact() -> Value {
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom.v1+json",
            "config": desc(OCI_EMPTY, "{}"),
            "layers": [],
            "subject": desc(OCI_MANIFEST, "the image"),
        })
    }

    /// `value` without the top-level field `name`.
    fn without(mut value: Value, name: &str) -> Value {
        value.as_object_mut().unwrap().remove(name);
        value
    }

    /// `value` with the top-level field `name` set to `to`.
    fn with(mut value: Value, name: &str, to: Value) -> Value {
        value[name] = to;
        value
    }

    fn parse(value: &Value, content_type: Option<&str>) -> Result<ParsedManifest, ManifestError> {
        parse_manifest(&serde_json::to_vec(value).unwrap(), content_type)
    }

    #[test]
    fn accepts_valid_manifests() {
        struct Case {
            name: &'static str,
            body: Value,
            content_type: Option<&'static str>,
            media_type: &'static str,
            kind: ManifestKind,
            layers: usize,
            manifests: usize,
            artifact_type: Option<&'static str>,
            has_subject: bool,
        }
        let image = |name, body, content_type, media_type, artifact_type| Case {
            name,
            body,
            content_type,
            media_type,
            kind: ManifestKind::Image,
            layers: 2,
            manifests: 0,
            artifact_type,
            has_subject: false,
        };
        let cases = [
            image(
                "oci image",
                oci_image(),
                Some(OCI_MANIFEST),
                OCI_MANIFEST,
                Some(OCI_CONFIG),
            ),
            image(
                "oci image, no Content-Type",
                oci_image(),
                None,
                OCI_MANIFEST,
                Some(OCI_CONFIG),
            ),
            image(
                "oci image, mediaType from Content-Type with parameters",
                without(oci_image(), "mediaType"),
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
                OCI_MANIFEST,
                Some(OCI_CONFIG),
            ),
            image(
                "oci image, inferred",
                without(oci_image(), "mediaType"),
                None,
                OCI_MANIFEST,
                Some(OCI_CONFIG),
            ),
            image(
                "oci image, Content-Type differs only in case",
                oci_image(),
                Some("Application/VND.OCI.Image.Manifest.v1+json"),
                OCI_MANIFEST,
                Some(OCI_CONFIG),
            ),
            image(
                "oci image, empty Content-Type",
                oci_image(),
                Some(""),
                OCI_MANIFEST,
                Some(OCI_CONFIG),
            ),
            image(
                "oci image, null optional fields",
                with(
                    with(oci_image(), "subject", Value::Null),
                    "annotations",
                    Value::Null,
                ),
                None,
                OCI_MANIFEST,
                Some(OCI_CONFIG),
            ),
            Case {
                layers: 1,
                ..image(
                    "docker schema 2",
                    docker_image(),
                    Some(DOCKER_MANIFEST),
                    DOCKER_MANIFEST,
                    Some(DOCKER_CONFIG),
                )
            },
            Case {
                name: "oci index",
                body: oci_index(),
                content_type: Some(OCI_INDEX),
                media_type: OCI_INDEX,
                kind: ManifestKind::Index,
                layers: 0,
                manifests: 2,
                artifact_type: None,
                has_subject: false,
            },
            Case {
                name: "oci index, inferred",
                body: without(oci_index(), "mediaType"),
                content_type: None,
                media_type: OCI_INDEX,
                kind: ManifestKind::Index,
                layers: 0,
                manifests: 2,
                artifact_type: None,
                has_subject: false,
            },
            Case {
                name: "empty oci index",
                body: with(oci_index(), "manifests", json!([])),
                content_type: None,
                media_type: OCI_INDEX,
                kind: ManifestKind::Index,
                layers: 0,
                manifests: 0,
                artifact_type: None,
                has_subject: false,
            },
            Case {
                name: "docker manifest list",
                body: docker_list(),
                content_type: Some(DOCKER_MANIFEST_LIST),
                media_type: DOCKER_MANIFEST_LIST,
                kind: ManifestKind::Index,
                layers: 0,
                manifests: 1,
                artifact_type: None,
                has_subject: false,
            },
            Case {
                name: "artifact with subject and artifactType",
                body: artifact(),
                content_type: Some(OCI_MANIFEST),
                media_type: OCI_MANIFEST,
                kind: ManifestKind::Image,
                layers: 0,
                manifests: 0,
                artifact_type: Some("application/vnd.example.sbom.v1+json"),
                has_subject: true,
            },
            Case {
                name: "artifact with empty artifactType falls back to config",
                body: with(artifact(), "artifactType", json!("")),
                content_type: None,
                media_type: OCI_MANIFEST,
                kind: ManifestKind::Image,
                layers: 0,
                manifests: 0,
                artifact_type: Some(OCI_EMPTY),
                has_subject: true,
            },
            Case {
                name: "index artifact with subject",
                body: with(
                    with(
                        oci_index(),
                        "artifactType",
                        json!("application/vnd.example.sig"),
                    ),
                    "subject",
                    desc(OCI_INDEX, "the index"),
                ),
                content_type: Some(OCI_INDEX),
                media_type: OCI_INDEX,
                kind: ManifestKind::Index,
                layers: 0,
                manifests: 2,
                artifact_type: Some("application/vnd.example.sig"),
                has_subject: true,
            },
        ];
        for case in cases {
            let m = parse(&case.body, case.content_type)
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(m.media_type, case.media_type, "{}", case.name);
            assert_eq!(m.kind, case.kind, "{}", case.name);
            assert_eq!(
                m.config.is_some(),
                case.kind == ManifestKind::Image,
                "{}",
                case.name
            );
            assert_eq!(m.layers.len(), case.layers, "{}", case.name);
            assert_eq!(m.manifests.len(), case.manifests, "{}", case.name);
            assert_eq!(
                m.artifact_type.as_deref(),
                case.artifact_type,
                "{}",
                case.name
            );
            assert_eq!(m.subject.is_some(), case.has_subject, "{}", case.name);
        }
    }

    #[test]
    fn oci_image_fields_are_carried_over() {
        let m = parse(&oci_image(), Some(OCI_MANIFEST)).unwrap();
        let config = m.config.unwrap();
        assert_eq!(config.media_type, OCI_CONFIG);
        assert_eq!(config.digest, Digest::sha256_of(b"config"));
        assert_eq!(config.size, 6);
        assert_eq!(m.layers[1].digest, Digest::sha256_of(b"layer1"));
        assert_eq!(
            m.annotations
                .get("org.opencontainers.image.created")
                .map(String::as_str),
            Some("2024-01-01T00:00:00Z")
        );

        let subject = parse(&artifact(), None).unwrap().subject.unwrap();
        assert_eq!(subject.digest, Digest::sha256_of(b"the image"));
        assert_eq!(subject.media_type, OCI_MANIFEST);
    }

    #[test]
    fn descriptor_optional_fields() {
        let mut layer = desc(crate::DOCKER_FOREIGN_LAYER, "foreign");
        layer["urls"] = json!(["https://example.com/layer.tar.gz"]);
        layer["annotations"] = json!({ "k": "v" });
        layer["artifactType"] = json!("application/vnd.example");
        layer["data"] = json!("e30=");
        let m = parse(&with(docker_image(), "layers", json!([layer])), None).unwrap();
        let d = &m.layers[0];
        assert_eq!(d.urls, ["https://example.com/layer.tar.gz"]);
        assert_eq!(d.annotations.as_ref().unwrap()["k"], "v");
        assert_eq!(d.artifact_type.as_deref(), Some("application/vnd.example"));
    }

    #[test]
    fn rejects_invalid_manifests() {
        fn path(p: &str) -> Expect {
            Expect::Invalid(p.to_owned())
        }
        #[derive(Debug)]
        enum Expect {
            Json,
            NotAnObject,
            SchemaVersion,
            Mismatch,
            Unsupported(&'static str),
            Ambiguous,
            UnknownMediaType,
            Invalid(String),
        }
        let mut bad_layer_digest = oci_image();
        bad_layer_digest["layers"][1]["digest"] = json!("sha256:abc");
        let mut md5_config = oci_image();
        md5_config["config"]["digest"] = json!("md5:d41d8cd98f00b204e9800998ecf8427e");
        let mut uppercase_digest = oci_image();
        uppercase_digest["config"]["digest"] =
            json!(Digest::sha256_of(b"config").to_string().to_uppercase());
        let mut negative_size = oci_image();
        negative_size["layers"][0]["size"] = json!(-1);
        let mut float_size = oci_image();
        float_size["layers"][0]["size"] = json!(1.5);
        let mut string_size = oci_image();
        string_size["layers"][0]["size"] = json!("12");
        let mut huge_size = oci_image();
        huge_size["layers"][0]["size"] = json!(u64::MAX);
        let mut no_size = oci_image();
        no_size["config"].as_object_mut().unwrap().remove("size");
        let mut no_descriptor_type = oci_image();
        no_descriptor_type["config"]
            .as_object_mut()
            .unwrap()
            .remove("mediaType");
        let mut bad_descriptor_type = oci_image();
        bad_descriptor_type["layers"][0]["mediaType"] = json!("not a media type");
        let mut no_digest = docker_list();
        no_digest["manifests"][0]
            .as_object_mut()
            .unwrap()
            .remove("digest");
        let mut bad_urls = oci_image();
        bad_urls["layers"][0]["urls"] = json!([1]);
        let mut bad_descriptor_annotations = oci_image();
        bad_descriptor_annotations["config"]["annotations"] = json!(["x"]);

        let cases: Vec<(&str, Vec<u8>, Option<&str>, Expect)> = vec![
            ("not json", b"{".to_vec(), None, Expect::Json),
            ("empty body", b"".to_vec(), None, Expect::Json),
            ("json array", b"[]".to_vec(), None, Expect::NotAnObject),
            (
                "json string",
                b"\"manifest\"".to_vec(),
                None,
                Expect::NotAnObject,
            ),
            (
                "json null",
                b"null".to_vec(),
                Some(OCI_MANIFEST),
                Expect::NotAnObject,
            ),
            ("json number", b"2".to_vec(), None, Expect::NotAnObject),
            (
                "media type mismatch",
                serde_json::to_vec(&oci_image()).unwrap(),
                Some(OCI_INDEX),
                Expect::Mismatch,
            ),
            (
                "docker type against oci Content-Type",
                serde_json::to_vec(&docker_image()).unwrap(),
                Some(OCI_MANIFEST),
                Expect::Mismatch,
            ),
            (
                "manifests and layers",
                serde_json::to_vec(&with(
                    without(oci_index(), "mediaType"),
                    "layers",
                    json!([]),
                ))
                .unwrap(),
                None,
                Expect::Ambiguous,
            ),
            (
                "manifests and config, declared as index",
                serde_json::to_vec(&with(oci_index(), "config", desc(OCI_CONFIG, "c"))).unwrap(),
                Some(OCI_INDEX),
                Expect::Ambiguous,
            ),
            (
                "missing config",
                serde_json::to_vec(&without(oci_image(), "config")).unwrap(),
                None,
                path("config"),
            ),
            (
                "null config",
                serde_json::to_vec(&with(oci_image(), "config", Value::Null)).unwrap(),
                None,
                path("config"),
            ),
            (
                "missing layers",
                serde_json::to_vec(&without(oci_image(), "layers")).unwrap(),
                None,
                path("layers"),
            ),
            (
                "layers not an array",
                serde_json::to_vec(&with(oci_image(), "layers", json!({}))).unwrap(),
                None,
                path("layers"),
            ),
            (
                "index without manifests",
                serde_json::to_vec(&without(oci_index(), "manifests")).unwrap(),
                None,
                path("manifests"),
            ),
            (
                "image type with only manifests",
                serde_json::to_vec(&with(oci_index(), "mediaType", json!(OCI_MANIFEST))).unwrap(),
                None,
                path("config"),
            ),
            (
                "bad digest inside",
                serde_json::to_vec(&bad_layer_digest).unwrap(),
                None,
                path("layers[1].digest"),
            ),
            (
                "unsupported digest inside",
                serde_json::to_vec(&md5_config).unwrap(),
                None,
                path("config.digest"),
            ),
            (
                "uppercase digest inside",
                serde_json::to_vec(&uppercase_digest).unwrap(),
                None,
                path("config.digest"),
            ),
            (
                "missing digest",
                serde_json::to_vec(&no_digest).unwrap(),
                None,
                path("manifests[0].digest"),
            ),
            (
                "negative size",
                serde_json::to_vec(&negative_size).unwrap(),
                None,
                path("layers[0].size"),
            ),
            (
                "fractional size",
                serde_json::to_vec(&float_size).unwrap(),
                None,
                path("layers[0].size"),
            ),
            (
                "string size",
                serde_json::to_vec(&string_size).unwrap(),
                None,
                path("layers[0].size"),
            ),
            (
                "size beyond int64",
                serde_json::to_vec(&huge_size).unwrap(),
                None,
                path("layers[0].size"),
            ),
            (
                "missing size",
                serde_json::to_vec(&no_size).unwrap(),
                None,
                path("config.size"),
            ),
            (
                "descriptor without mediaType",
                serde_json::to_vec(&no_descriptor_type).unwrap(),
                None,
                path("config.mediaType"),
            ),
            (
                "descriptor with bad mediaType",
                serde_json::to_vec(&bad_descriptor_type).unwrap(),
                None,
                path("layers[0].mediaType"),
            ),
            (
                "bad urls",
                serde_json::to_vec(&bad_urls).unwrap(),
                None,
                path("layers[0].urls"),
            ),
            (
                "bad descriptor annotations",
                serde_json::to_vec(&bad_descriptor_annotations).unwrap(),
                None,
                path("config.annotations"),
            ),
            (
                "subject not a descriptor",
                serde_json::to_vec(&with(oci_image(), "subject", json!("sha256:abc"))).unwrap(),
                None,
                path("subject"),
            ),
            (
                "bad annotations",
                serde_json::to_vec(&with(oci_image(), "annotations", json!({ "k": 1 }))).unwrap(),
                None,
                path("annotations"),
            ),
            (
                "bad artifactType",
                serde_json::to_vec(&with(artifact(), "artifactType", json!("sbom"))).unwrap(),
                None,
                path("artifactType"),
            ),
            (
                "mediaType not a string",
                serde_json::to_vec(&with(oci_image(), "mediaType", json!(2))).unwrap(),
                None,
                path("mediaType"),
            ),
            (
                "docker type only in Content-Type",
                serde_json::to_vec(&without(docker_image(), "mediaType")).unwrap(),
                Some(DOCKER_MANIFEST),
                path("mediaType"),
            ),
            (
                "docker list type only in Content-Type",
                serde_json::to_vec(&without(docker_list(), "mediaType")).unwrap(),
                Some(DOCKER_MANIFEST_LIST),
                path("mediaType"),
            ),
            (
                "schema 1 by Content-Type",
                br#"{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[],"signatures":[]}"#
                    .to_vec(),
                Some(DOCKER_MANIFEST_V1_SIGNED),
                Expect::Unsupported(DOCKER_MANIFEST_V1_SIGNED),
            ),
            (
                "schema 1 without Content-Type",
                br#"{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[]}"#.to_vec(),
                None,
                Expect::Unsupported(DOCKER_MANIFEST_V1),
            ),
            (
                "unknown media type",
                serde_json::to_vec(&with(
                    oci_image(),
                    "mediaType",
                    json!("application/vnd.example+json"),
                ))
                .unwrap(),
                None,
                Expect::Unsupported("application/vnd.example+json"),
            ),
            (
                "unknown Content-Type",
                serde_json::to_vec(&without(oci_image(), "mediaType")).unwrap(),
                Some("application/json"),
                Expect::Unsupported("application/json"),
            ),
            (
                "schemaVersion missing",
                serde_json::to_vec(&without(oci_image(), "schemaVersion")).unwrap(),
                None,
                Expect::SchemaVersion,
            ),
            (
                "schemaVersion 1 for an oci image",
                serde_json::to_vec(&with(oci_image(), "schemaVersion", json!(1))).unwrap(),
                None,
                Expect::SchemaVersion,
            ),
            (
                "schemaVersion as a string",
                serde_json::to_vec(&with(oci_image(), "schemaVersion", json!("2"))).unwrap(),
                None,
                Expect::SchemaVersion,
            ),
            (
                "nothing to infer the type from",
                br#"{"schemaVersion":2,"layers":[]}"#.to_vec(),
                None,
                Expect::UnknownMediaType,
            ),
        ];
        for (name, body, content_type, want) in cases {
            let err = parse_manifest(&body, content_type).expect_err(name);
            let ok = match (&want, &err) {
                (Expect::Json, ManifestError::Json(_))
                | (Expect::NotAnObject, ManifestError::NotAnObject)
                | (Expect::SchemaVersion, ManifestError::SchemaVersion)
                | (Expect::Mismatch, ManifestError::MediaTypeMismatch { .. })
                | (Expect::Ambiguous, ManifestError::Ambiguous)
                | (Expect::UnknownMediaType, ManifestError::UnknownMediaType) => true,
                (Expect::Unsupported(want), ManifestError::Unsupported(got)) => want == got,
                (Expect::Invalid(want), ManifestError::Invalid { path, .. }) => want == path,
                _ => false,
            };
            assert!(ok, "{name}: expected {want:?}, got {err:?}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn error_messages_do_not_echo_input() {
        let long_type = format!("application/{}", "x".repeat(10_000));
        let cases = [
            (with(oci_image(), "mediaType", json!(long_type)), None),
            (oci_image(), Some(long_type.as_str())),
            (without(oci_image(), "mediaType"), Some(long_type.as_str())),
            (
                with(
                    oci_image(),
                    "config",
                    json!({ "mediaType": OCI_CONFIG, "size": 1, "digest": format!("sha256:{}", "a".repeat(10_000)) }),
                ),
                None,
            ),
            (
                with(
                    oci_image(),
                    "config",
                    json!({ "mediaType": OCI_CONFIG, "size": 1, "digest": format!("{}:a", "a".repeat(10_000)) }),
                ),
                None,
            ),
        ];
        for (body, content_type) in cases {
            let message = parse(&body, content_type).unwrap_err().to_string();
            assert!(message.len() < 250, "{} chars: {message}", message.len());
        }
    }

    #[test]
    fn descriptor_serde() {
        let d = Descriptor {
            media_type: OCI_MANIFEST.to_owned(),
            digest: Digest::sha256_of(b"x"),
            size: 1,
            urls: Vec::new(),
            annotations: None,
            artifact_type: Some("application/vnd.example".to_owned()),
        };
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(
            json,
            json!({
                "mediaType": OCI_MANIFEST,
                "digest": Digest::sha256_of(b"x").to_string(),
                "size": 1,
                "artifactType": "application/vnd.example",
            })
        );
        assert_eq!(serde_json::from_value::<Descriptor>(json).unwrap(), d);
        // Unknown fields such as `platform` are ignored; invalid digests are refused.
        let mut with_platform = desc(OCI_MANIFEST, "p");
        with_platform["platform"] = json!({ "os": "linux" });
        assert!(serde_json::from_value::<Descriptor>(with_platform).is_ok());
        let mut bad = desc(OCI_MANIFEST, "p");
        bad["digest"] = json!("sha256:nope");
        assert!(serde_json::from_value::<Descriptor>(bad).is_err());
    }
}
