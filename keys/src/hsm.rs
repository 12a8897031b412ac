//! [`HsmKeyProvider`]: `K_master` lives in a PKCS#11 token (an HSM, or SoftHSM2 in tests) and
//! subkeys are derived inside it; [`HsmProvisioner`] creates, imports, inspects and retires
//! master key versions on the token.
//!
//! # Key objects
//!
//! Master version `alias:vN` ([`MasterKeyId`]) is the token's secret-key object
//! (`CKO_SECRET_KEY`) whose `CKA_LABEL` is the UTF-8 string `"<alias>:v<N>"` (also stored in
//! `CKA_ID`). Exactly one object may carry a label. A usable master has:
//!
//! | attribute | required |
//! |---|---|
//! | `CKA_KEY_TYPE` | `CKK_GENERIC_SECRET` or `CKK_SHA256_HMAC` |
//! | `CKA_SIGN` | `true` |
//! | `CKA_VALUE_LEN` | at least 32 bytes |
//! | `CKA_SENSITIVE` | `true` |
//! | `CKA_EXTRACTABLE` | `false` |
//!
//! A key that is extractable or not sensitive could leave the token, so it is refused with
//! [`KeyError::KeyExtractable`] unless [`HsmConfig::allow_extractable`] is set (meant for
//! tests and migrations; never for production). [`HsmProvisioner::generate_master`] creates
//! conforming keys inside the token (the value never exists outside it);
//! [`HsmProvisioner::import_master`] loads known bytes, e.g. to move an
//! [`crate::InMemoryKeyProvider`] master into an HSM without losing old epochs.
//!
//! # Derivation
//!
//! `subkey = C_Sign(CKM_SHA256_HMAC, master, info || 0x01)`, which equals the shared
//! construction `HKDF-SHA256-Expand(K_master, info, 32)` ([`crate::derive`]); only the 32-byte
//! subkey crosses into process memory, straight into a [`SecretKey`].
//!
//! # Sessions
//!
//! PKCS#11 logs in per application and token, and a session must not be used by two threads
//! at once. So every [`HsmKeyProvider`] and [`HsmProvisioner`] in the process that addresses
//! the same module and token shares one logged-in read/write session behind a mutex
//! (operations on one token are serialised). A second provider for an already logged-in token
//! must present the same PIN (compared in constant time) or gets
//! [`KeyError::LoginFailed`]. If the session is lost (token reset, session closed), the next
//! operation reopens it and logs in again once. The module is loaded and `C_Initialize`d once
//! per process and kept loaded; a module already initialised by other code is accepted.

use crate::derive::DerivationRequest;
use crate::error::{KeyError, LoginFailure};
use crate::master::MasterKeyId;
use crate::provider::KeyProvider;
use crate::secret::{KEY_LEN, SecretKey, SecretString};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use zeroize::{Zeroize, Zeroizing};

/// Which token of a PKCS#11 module holds the master keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TokenSelector {
    /// The token whose label (`CKA_LABEL` of the token, trailing blanks ignored) is this.
    /// Preferred: SoftHSM2 and many HSMs renumber slots when tokens are added.
    Label(String),
    /// The token in this slot id.
    Slot(u64),
}

impl fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSelector::Label(label) => write!(f, "label {label:?}"),
            TokenSelector::Slot(slot) => write!(f, "slot {slot}"),
        }
    }
}

/// Where and how [`HsmKeyProvider`] reaches its master key. `Debug` redacts the PIN.
#[derive(Debug)]
pub struct HsmConfig {
    /// The PKCS#11 module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module_path: PathBuf,
    /// The token holding the master keys.
    pub token: TokenSelector,
    /// The token's user PIN.
    pub user_pin: SecretString,
    /// The master key new epochs use; lower versions of the same alias stay derivable.
    pub master: MasterKeyId,
    /// Accept a master whose value could leave the token (`CKA_EXTRACTABLE=true` or
    /// `CKA_SENSITIVE=false`). Off by default; for tests and migrations only.
    pub allow_extractable: bool,
}

impl HsmConfig {
    /// A configuration selecting the token by label, refusing extractable keys.
    pub fn new(
        module_path: impl Into<PathBuf>,
        token_label: impl Into<String>,
        user_pin: SecretString,
        master: MasterKeyId,
    ) -> HsmConfig {
        HsmConfig {
            module_path: module_path.into(),
            token: TokenSelector::Label(token_label.into()),
            user_pin,
            master,
            allow_extractable: false,
        }
    }

    /// Sets [`HsmConfig::allow_extractable`].
    pub fn allow_extractable(mut self, allow: bool) -> HsmConfig {
        self.allow_extractable = allow;
        self
    }
}

/// The non-secret attributes of a master key object on the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterKeyInfo {
    /// The key's id (from its label).
    pub id: MasterKeyId,
    /// `CKA_KEY_TYPE`, e.g. `"CKK_GENERIC_SECRET"`.
    pub key_type: String,
    /// `CKA_VALUE_LEN` in bytes, if the token reports it.
    pub value_len: Option<usize>,
    /// `CKA_SIGN`.
    pub can_sign: bool,
    /// `CKA_SENSITIVE` (value never readable in plaintext).
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE` (value may be wrapped out of the token).
    pub extractable: bool,
    /// `CKA_ALWAYS_SENSITIVE`.
    pub always_sensitive: bool,
    /// `CKA_NEVER_EXTRACTABLE`.
    pub never_extractable: bool,
    /// `CKA_LOCAL`: generated inside the token (not imported).
    pub generated_on_token: bool,
}

/// Extractability of a master key created by [`HsmProvisioner::import_master`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MasterKeyAttributes {
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
}

impl MasterKeyAttributes {
    /// Sensitive and non-extractable: the value cannot be read back out of the token.
    pub const PROTECTED: MasterKeyAttributes = MasterKeyAttributes {
        extractable: false,
        sensitive: true,
    };
}

/// A [`KeyProvider`] whose masters live in a PKCS#11 token; subkeys are HMAC-SHA256
/// signatures computed inside the token, so the master never enters process memory.
///
/// Derives for the configured master and every other version of the same alias still on
/// the token (old epochs stay decryptable); versions are checked against the attribute
/// policy in the [module docs](crate::hsm) on first use.
pub struct HsmKeyProvider {
    token: Arc<TokenSession>,
    current: MasterKeyId,
    allow_extractable: bool,
}

impl HsmKeyProvider {
    /// Loads the module, finds the token, logs in (or joins this process's existing session
    /// to that token) and checks that the configured master exists and is usable.
    ///
    /// # Errors
    /// [`KeyError::ModuleLoad`], [`KeyError::TokenNotFound`], [`KeyError::LoginFailed`],
    /// [`KeyError::KeyNotFound`], [`KeyError::AmbiguousKey`], [`KeyError::KeyUnusable`],
    /// [`KeyError::KeyExtractable`], [`KeyError::Pkcs11`].
    pub fn open(config: HsmConfig) -> Result<HsmKeyProvider, KeyError> {
        let HsmConfig {
            module_path,
            token,
            user_pin,
            master,
            allow_extractable,
        } = config;
        let token = TokenSession::connect(&module_path, &token, user_pin)?;
        let provider = HsmKeyProvider {
            token,
            current: master,
            allow_extractable,
        };
        provider.token.run(|session, cache| {
            provider
                .token
                .usable_key(session, cache, &provider.current, allow_extractable)?;
            Ok(())
        })?;
        Ok(provider)
    }

    /// The label of the token in use.
    pub fn token_label(&self) -> &str {
        &self.token.label
    }

    /// Attributes of master `version` of this provider's alias (non-secret).
    ///
    /// # Errors
    /// As [`HsmProvisioner::inspect_master`].
    pub fn inspect(&self, version: u32) -> Result<MasterKeyInfo, KeyError> {
        let id = self.current.with_version(version)?;
        self.token
            .run(|session, cache| Ok(self.token.lookup(session, cache, &id)?.info.clone()))
    }
}

impl KeyProvider for HsmKeyProvider {
    fn current_master(&self) -> Result<MasterKeyId, KeyError> {
        Ok(self.current.clone())
    }

    fn derive(
        &self,
        master: &MasterKeyId,
        request: &DerivationRequest<'_>,
    ) -> Result<SecretKey, KeyError> {
        #[cfg(feature = "observability")]
        let _span = request.span("pkcs11").entered();
        if master.alias() != self.current.alias() {
            return Err(KeyError::KeyNotFound {
                key: master.clone(),
                provider: self.describe(),
            });
        }
        let message = request.hmac_message()?;
        self.token.run(|session, cache| {
            let handle = self
                .token
                .usable_key(session, cache, master, self.allow_extractable)?;
            let mac = Zeroizing::new(
                session
                    .sign(&Mechanism::Sha256Hmac, handle, &message)
                    .map_err(|e| Fault::Device("C_Sign (derive)", e))?,
            );
            if mac.len() != KEY_LEN {
                return Err(Fault::Key(KeyError::KeyUnusable {
                    key: master.clone(),
                    token: self.token.label.clone(),
                    reason: format!(
                        "CKM_SHA256_HMAC returned {} bytes instead of {KEY_LEN}",
                        mac.len()
                    ),
                }));
            }
            let Ok(subkey) = SecretKey::try_from_fn(|out| {
                out.copy_from_slice(&mac);
                Ok::<(), std::convert::Infallible>(())
            });
            Ok(subkey)
        })
    }

    fn describe(&self) -> String {
        format!("pkcs11:{}", self.token.label)
    }
}

impl fmt::Debug for HsmKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsmKeyProvider")
            .field("token", &self.token)
            .field("current", &self.current)
            .field("allow_extractable", &self.allow_extractable)
            .finish()
    }
}

/// Creates, imports, inspects, lists and destroys master key versions on a PKCS#11 token —
/// the "rotate `K_master` in the HSM" half of a rotation (the other half is redeploying with
/// [`HsmConfig::master`] at the new version).
///
/// Shares the process's logged-in session with any [`HsmKeyProvider`] on the same token.
pub struct HsmProvisioner {
    token: Arc<TokenSession>,
}

impl HsmProvisioner {
    /// Loads the module, finds the token and logs in (or joins the existing session).
    ///
    /// # Errors
    /// [`KeyError::ModuleLoad`], [`KeyError::TokenNotFound`], [`KeyError::LoginFailed`],
    /// [`KeyError::Pkcs11`].
    pub fn connect(
        module_path: impl AsRef<Path>,
        token: &TokenSelector,
        user_pin: SecretString,
    ) -> Result<HsmProvisioner, KeyError> {
        Ok(HsmProvisioner {
            token: TokenSession::connect(module_path.as_ref(), token, user_pin)?,
        })
    }

    /// The label of the token in use.
    pub fn token_label(&self) -> &str {
        &self.token.label
    }

    /// Generates master `id` inside the token (`CKM_GENERIC_SECRET_KEY_GEN`, 256 bits,
    /// sensitive, non-extractable, sign-only, non-modifiable): its value never exists
    /// outside the token.
    ///
    /// # Errors
    /// [`KeyError::KeyAlreadyExists`] if the label is taken; [`KeyError::Pkcs11`].
    pub fn generate_master(&self, id: &MasterKeyId) -> Result<MasterKeyInfo, KeyError> {
        self.token.run(|session, cache| {
            self.token.ensure_absent(session, id)?;
            let label = id.label().into_bytes();
            let mut template = key_template(&label, MasterKeyAttributes::PROTECTED);
            template.push(Attribute::ValueLen((KEY_LEN as u64).into()));
            session
                .generate_key(&Mechanism::GenericSecretKeyGen, &template)
                .map_err(|e| Fault::Device("C_GenerateKey", e))?;
            Ok(self.token.lookup(session, cache, id)?.info.clone())
        })
    }

    /// Imports known master bytes as `id`. For tests (compare HSM derivation with
    /// [`crate::InMemoryKeyProvider`] on the same bytes) and for moving an existing in-memory
    /// master into an HSM so old epochs stay derivable. Use
    /// [`MasterKeyAttributes::PROTECTED`] unless a test needs an extractable key.
    ///
    /// # Errors
    /// [`KeyError::KeyAlreadyExists`] if the label is taken; [`KeyError::Pkcs11`].
    pub fn import_master(
        &self,
        id: &MasterKeyId,
        master: &SecretKey,
        attributes: MasterKeyAttributes,
    ) -> Result<MasterKeyInfo, KeyError> {
        self.token.run(|session, cache| {
            self.token.ensure_absent(session, id)?;
            let label = id.label().into_bytes();
            let mut template = key_template(&label, attributes);
            template.push(Attribute::Value(master.with_bytes(|b| b.to_vec())));
            let created = session.create_object(&template);
            for attribute in &mut template {
                if let Attribute::Value(value) = attribute {
                    value.zeroize();
                }
            }
            created.map_err(|e| Fault::Device("C_CreateObject (import)", e))?;
            Ok(self.token.lookup(session, cache, id)?.info.clone())
        })
    }

    /// The non-secret attributes of master `id`.
    ///
    /// # Errors
    /// [`KeyError::KeyNotFound`], [`KeyError::AmbiguousKey`], [`KeyError::Pkcs11`].
    pub fn inspect_master(&self, id: &MasterKeyId) -> Result<MasterKeyInfo, KeyError> {
        self.token
            .run(|session, cache| Ok(self.token.lookup(session, cache, id)?.info.clone()))
    }

    /// The versions of `alias` present on the token, ascending.
    ///
    /// # Errors
    /// [`KeyError::InvalidAlias`]; [`KeyError::Pkcs11`].
    pub fn list_versions(&self, alias: &str) -> Result<Vec<u32>, KeyError> {
        MasterKeyId::new(alias, 1)?;
        let prefix = format!("{alias}:v");
        self.token.run(|session, _cache| {
            require_login(session)?;
            let handles = session
                .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])
                .map_err(|e| Fault::Device("C_FindObjects (list)", e))?;
            let mut versions = Vec::new();
            for handle in handles {
                let attributes = session
                    .get_attributes(handle, &[AttributeType::Label])
                    .map_err(|e| Fault::Device("C_GetAttributeValue (list)", e))?;
                for attribute in attributes {
                    if let Attribute::Label(label) = attribute
                        && let Some(version) = std::str::from_utf8(&label)
                            .ok()
                            .and_then(|l| l.strip_prefix(&prefix))
                            .filter(|v| !v.starts_with('0') && !v.starts_with('+'))
                            .and_then(|v| v.parse::<u32>().ok())
                    {
                        versions.push(version);
                    }
                }
            }
            versions.sort_unstable();
            versions.dedup();
            Ok(versions)
        })
    }

    /// Destroys master `id` on the token — only once no key epoch sealed under it is still
    /// referenced, or files sealed under it become unreadable.
    ///
    /// # Errors
    /// [`KeyError::KeyNotFound`], [`KeyError::AmbiguousKey`], [`KeyError::Pkcs11`].
    pub fn destroy_master(&self, id: &MasterKeyId) -> Result<(), KeyError> {
        self.token.run(|session, cache| {
            let handle = self.token.lookup(session, cache, id)?.handle;
            cache.remove(id);
            session
                .destroy_object(handle)
                .map_err(|e| Fault::Device("C_DestroyObject", e))
        })
    }
}

impl fmt::Debug for HsmProvisioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsmProvisioner")
            .field("token", &self.token)
            .finish()
    }
}

/// The template shared by generated and imported masters (value or length added by caller).
fn key_template(label: &[u8], attributes: MasterKeyAttributes) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(attributes.sensitive),
        Attribute::Extractable(attributes.extractable),
        Attribute::Sign(true),
        Attribute::Verify(false),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Modifiable(false),
        Attribute::Label(label.to_vec()),
        Attribute::Id(label.to_vec()),
    ]
}

/// A failure inside a session operation: either a finished [`KeyError`] or a raw PKCS#11
/// error that may mean the session or a cached handle went stale (and is worth one retry).
enum Fault {
    Key(KeyError),
    Device(&'static str, CkError),
}

impl From<KeyError> for Fault {
    fn from(error: KeyError) -> Fault {
        Fault::Key(error)
    }
}

fn rv(error: &CkError) -> Option<RvError> {
    match error {
        CkError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

fn session_lost(error: &CkError) -> bool {
    matches!(
        rv(error),
        Some(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
        )
    )
}

fn handle_stale(error: &CkError) -> bool {
    matches!(
        rv(error),
        Some(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid)
    )
}

/// A master key object found on the token, with its attributes.
struct CachedKey {
    handle: ObjectHandle,
    info: MasterKeyInfo,
}

/// Key objects found so far, by id; cleared whenever the session is reopened.
type KeyCache = HashMap<MasterKeyId, CachedKey>;

/// The session (absent after it was lost, until the next operation reopens it) and the
/// handles found through it. Guarded by [`TokenSession::state`]'s mutex.
struct LiveSession {
    session: Option<Session>,
    keys: KeyCache,
}

/// One logged-in session to one token, shared by everything in the process that addresses
/// that (module, token).
struct TokenSession {
    pkcs11: Pkcs11,
    module: PathBuf,
    slot: Slot,
    label: String,
    pin: SecretString,
    state: Mutex<LiveSession>,
}

/// Loaded and initialised modules, by canonical path. Kept for the life of the process:
/// PKCS#11 allows one `C_Initialize` per process, and unloading a module under live
/// sessions is unsound for many modules.
static MODULES: Mutex<BTreeMap<PathBuf, Pkcs11>> = Mutex::new(BTreeMap::new());

/// Live token sessions by (canonical module path, slot id).
static TOKENS: Mutex<BTreeMap<(PathBuf, u64), Weak<TokenSession>>> = Mutex::new(BTreeMap::new());

fn load_module(path: &Path) -> Result<(PathBuf, Pkcs11), KeyError> {
    let module_error = |reason: String| KeyError::ModuleLoad {
        path: path.to_owned(),
        reason,
    };
    let canonical = std::fs::canonicalize(path)
        .map_err(|e| module_error(format!("the file cannot be opened ({e})")))?;
    let mut modules = MODULES.lock();
    if let Some(pkcs11) = modules.get(&canonical) {
        return Ok((canonical, pkcs11.clone()));
    }
    let pkcs11 = Pkcs11::new(&canonical).map_err(|e| module_error(e.to_string()))?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {}
        Err(e) if rv(&e) == Some(RvError::CryptokiAlreadyInitialized) => {}
        Err(e) => return Err(module_error(format!("C_Initialize failed: {e}"))),
    }
    modules.insert(canonical.clone(), pkcs11.clone());
    Ok((canonical, pkcs11))
}

fn find_slot(
    pkcs11: &Pkcs11,
    module: &Path,
    selector: &TokenSelector,
) -> Result<(Slot, String), KeyError> {
    let device = |operation: &'static str, e: CkError| KeyError::Pkcs11 {
        operation,
        token: selector.to_string(),
        source: Box::new(e),
    };
    let slots = pkcs11
        .get_slots_with_token()
        .map_err(|e| device("C_GetSlotList", e))?;
    let mut tokens = Vec::with_capacity(slots.len());
    for slot in slots {
        let info = pkcs11
            .get_token_info(slot)
            .map_err(|e| device("C_GetTokenInfo", e))?;
        if info.token_initialized() {
            tokens.push((slot, info.label().trim_end().to_owned()));
        }
    }
    let mut matching = tokens.iter().filter(|(slot, label)| match selector {
        TokenSelector::Label(wanted) => label == wanted.trim_end(),
        TokenSelector::Slot(id) => slot.id() == *id,
    });
    match (matching.next(), matching.next()) {
        (Some(found), None) => Ok(found.clone()),
        (first, second) => Err(KeyError::TokenNotFound {
            selector: match (first, second) {
                (Some(_), Some(_)) => format!("{selector} (more than one token matches)"),
                _ => selector.to_string(),
            },
            module: module.to_owned(),
            available: tokens.into_iter().map(|(_, label)| label).collect(),
        }),
    }
}

impl TokenSession {
    fn connect(
        module_path: &Path,
        selector: &TokenSelector,
        pin: SecretString,
    ) -> Result<Arc<TokenSession>, KeyError> {
        let (module, pkcs11) = load_module(module_path)?;
        let (slot, label) = find_slot(&pkcs11, module_path, selector)?;
        let mut tokens = TOKENS.lock();
        tokens.retain(|_, weak| weak.strong_count() > 0);
        let key = (module.clone(), slot.id());
        if let Some(existing) = tokens.get(&key).and_then(Weak::upgrade) {
            // The process is already logged in to this token, so C_Login cannot check this
            // PIN; compare it with the one that did log in instead.
            if !existing.pin.ct_eq(&pin) {
                return Err(KeyError::LoginFailed {
                    token: label,
                    reason: LoginFailure::PinIncorrect,
                });
            }
            return Ok(existing);
        }
        let token = TokenSession {
            pkcs11,
            module,
            slot,
            label,
            pin,
            state: Mutex::new(LiveSession {
                session: None,
                keys: HashMap::new(),
            }),
        };
        let session = token.open_logged_in()?;
        token.state.lock().session = Some(session);
        let token = Arc::new(token);
        tokens.insert(key, Arc::downgrade(&token));
        Ok(token)
    }

    fn open_logged_in(&self) -> Result<Session, KeyError> {
        let session = self
            .pkcs11
            .open_rw_session(self.slot)
            .map_err(|e| self.device("C_OpenSession", e))?;
        let pin = AuthPin::from(self.pin.with_str(str::to_owned));
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) => Ok(session),
            // Logged in by other code in this process: the login is per application.
            Err(e) if rv(&e) == Some(RvError::UserAlreadyLoggedIn) => Ok(session),
            Err(e) => Err(KeyError::LoginFailed {
                token: self.label.clone(),
                reason: login_failure(&e),
            }),
        }
    }

    fn device(&self, operation: &'static str, e: CkError) -> KeyError {
        KeyError::Pkcs11 {
            operation,
            token: self.label.clone(),
            source: Box::new(e),
        }
    }

    /// Runs `op` on the logged-in session, reopening the session (and logging in again) once
    /// if the login or session was lost, and refreshing cached key handles once if they went
    /// stale (at most three attempts).
    fn run<R>(
        &self,
        mut op: impl FnMut(&Session, &mut KeyCache) -> Result<R, Fault>,
    ) -> Result<R, KeyError> {
        let mut state = self.state.lock();
        let (mut reconnected, mut refreshed) = (false, false);
        loop {
            let LiveSession { session, keys } = &mut *state;
            let live = match session {
                Some(live) => live,
                None => {
                    keys.clear();
                    session.insert(self.open_logged_in()?)
                }
            };
            match op(live, keys) {
                Ok(value) => return Ok(value),
                Err(Fault::Key(error)) => return Err(error),
                Err(Fault::Device(_, e)) if !reconnected && session_lost(&e) => {
                    reconnected = true;
                    *session = None;
                }
                Err(Fault::Device(_, e)) if !refreshed && handle_stale(&e) => {
                    refreshed = true;
                    keys.clear();
                }
                Err(Fault::Device(operation, e)) => return Err(self.device(operation, e)),
            }
        }
    }

    fn key_not_found(&self, id: &MasterKeyId) -> KeyError {
        KeyError::KeyNotFound {
            key: id.clone(),
            provider: format!("pkcs11:{}", self.label),
        }
    }

    /// Finds the objects labelled like `id`. Private objects are invisible to a session that
    /// is not logged in, so an empty result from a logged-out session is reported as a lost
    /// login (and retried after logging in again), never as "not found".
    fn find(&self, session: &Session, id: &MasterKeyId) -> Result<Vec<ObjectHandle>, Fault> {
        let handles = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(id.label().into_bytes()),
            ])
            .map_err(|e| Fault::Device("C_FindObjects", e))?;
        if handles.is_empty() {
            require_login(session)?;
        }
        Ok(handles)
    }

    fn ensure_absent(&self, session: &Session, id: &MasterKeyId) -> Result<(), Fault> {
        if self.find(session, id)?.is_empty() {
            Ok(())
        } else {
            Err(Fault::Key(KeyError::KeyAlreadyExists {
                key: id.clone(),
                token: self.label.clone(),
            }))
        }
    }

    /// Finds master `id` (from the cache or the token) and reads its attributes.
    fn lookup<'c>(
        &self,
        session: &Session,
        cache: &'c mut KeyCache,
        id: &MasterKeyId,
    ) -> Result<&'c CachedKey, Fault> {
        if !cache.contains_key(id) {
            let handles = self.find(session, id)?;
            let handle = match handles.as_slice() {
                [] => return Err(Fault::Key(self.key_not_found(id))),
                [one] => *one,
                many => {
                    return Err(Fault::Key(KeyError::AmbiguousKey {
                        key: id.clone(),
                        token: self.label.clone(),
                        count: many.len(),
                    }));
                }
            };
            let info = read_info(session, handle, id)?;
            cache.insert(id.clone(), CachedKey { handle, info });
        }
        cache
            .get(id)
            .ok_or_else(|| Fault::Key(self.key_not_found(id)))
    }

    /// Finds master `id` and checks it against the attribute policy.
    fn usable_key(
        &self,
        session: &Session,
        cache: &mut KeyCache,
        id: &MasterKeyId,
        allow_extractable: bool,
    ) -> Result<ObjectHandle, Fault> {
        let key = self.lookup(session, cache, id)?;
        let info = &key.info;
        let unusable = |reason: String| {
            Fault::Key(KeyError::KeyUnusable {
                key: id.clone(),
                token: self.label.clone(),
                reason,
            })
        };
        let generic = KeyType::GENERIC_SECRET.to_string();
        let hmac = KeyType::SHA256_HMAC.to_string();
        if info.key_type != generic && info.key_type != hmac {
            return Err(unusable(format!(
                "CKA_KEY_TYPE is {}; it must be {generic} or {hmac}",
                info.key_type
            )));
        }
        if !info.can_sign {
            return Err(unusable("CKA_SIGN is false; it must be true".to_owned()));
        }
        match info.value_len {
            Some(len) if len >= KEY_LEN => {}
            Some(len) => {
                return Err(unusable(format!(
                    "CKA_VALUE_LEN is {len} bytes; at least {KEY_LEN} are required"
                )));
            }
            None => {
                return Err(unusable(
                    "the token does not report CKA_VALUE_LEN; at least 32 bytes are required"
                        .to_owned(),
                ));
            }
        }
        if !allow_extractable && (info.extractable || !info.sensitive) {
            return Err(Fault::Key(KeyError::KeyExtractable {
                key: id.clone(),
                token: self.label.clone(),
                what: match (info.extractable, info.sensitive) {
                    (true, false) => "extractable and not sensitive",
                    (true, true) => "extractable",
                    _ => "not sensitive",
                },
            }));
        }
        Ok(key.handle)
    }
}

/// Fails with a (retryable) "user not logged in" fault unless `session` is logged in as the
/// user: searches in a logged-out session silently skip private objects.
fn require_login(session: &Session) -> Result<(), Fault> {
    let state = session
        .get_session_info()
        .map_err(|e| Fault::Device("C_GetSessionInfo", e))?
        .session_state();
    if matches!(state, SessionState::RwUser | SessionState::RoUser) {
        Ok(())
    } else {
        Err(Fault::Device(
            "C_FindObjects",
            CkError::Pkcs11(RvError::UserNotLoggedIn, Function::FindObjects),
        ))
    }
}

/// Reads the non-secret attributes of a key object. Missing security attributes are taken
/// at their least safe value (extractable, not sensitive), so the policy refuses them.
fn read_info(
    session: &Session,
    handle: ObjectHandle,
    id: &MasterKeyId,
) -> Result<MasterKeyInfo, Fault> {
    let attributes = session
        .get_attributes(
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::ValueLen,
                AttributeType::Sign,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable,
                AttributeType::Local,
            ],
        )
        .map_err(|e| Fault::Device("C_GetAttributeValue", e))?;
    let mut info = MasterKeyInfo {
        id: id.clone(),
        key_type: "unknown".to_owned(),
        value_len: None,
        can_sign: false,
        sensitive: false,
        extractable: true,
        always_sensitive: false,
        never_extractable: false,
        generated_on_token: false,
    };
    for attribute in attributes {
        match attribute {
            Attribute::KeyType(key_type) => info.key_type = key_type.to_string(),
            Attribute::ValueLen(len) => info.value_len = usize::try_from(*len).ok(),
            Attribute::Sign(v) => info.can_sign = v,
            Attribute::Sensitive(v) => info.sensitive = v,
            Attribute::Extractable(v) => info.extractable = v,
            Attribute::AlwaysSensitive(v) => info.always_sensitive = v,
            Attribute::NeverExtractable(v) => info.never_extractable = v,
            Attribute::Local(v) => info.generated_on_token = v,
            _ => {}
        }
    }
    Ok(info)
}

fn login_failure(error: &CkError) -> LoginFailure {
    match rv(error) {
        Some(RvError::PinIncorrect) => LoginFailure::PinIncorrect,
        Some(RvError::PinInvalid | RvError::PinLenRange) => LoginFailure::PinInvalid,
        Some(RvError::PinLocked) => LoginFailure::PinLocked,
        Some(RvError::PinExpired) => LoginFailure::PinExpired,
        Some(RvError::UserPinNotInitialized) => LoginFailure::PinNotInitialized,
        Some(other) => LoginFailure::Other(format!("{other:?}")),
        None => LoginFailure::Other(error.to_string()),
    }
}

impl fmt::Debug for TokenSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSession")
            .field("label", &self.label)
            .field("slot", &self.slot.id())
            .field("module", &self.module)
            .field("user_pin", &self.pin)
            .finish()
    }
}
