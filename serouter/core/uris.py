"""Every URI the router sends, as named constants, and URI validation.

Error and close URIs are from the WAMP spec (``rfc/text/basic/uri_reference.md`` and the
Advanced Profile). Code never spells a ``wamp.*`` URI inline: it uses these names.
"""

import re

# -- errors (Basic Profile)
INVALID_URI = "wamp.error.invalid_uri"
NO_SUCH_PROCEDURE = "wamp.error.no_such_procedure"
PROCEDURE_ALREADY_EXISTS = "wamp.error.procedure_already_exists"
NO_SUCH_REGISTRATION = "wamp.error.no_such_registration"
NO_SUCH_SUBSCRIPTION = "wamp.error.no_such_subscription"
INVALID_ARGUMENT = "wamp.error.invalid_argument"
CANCELED = "wamp.error.canceled"
PAYLOAD_SIZE_EXCEEDED = "wamp.error.payload_size_exceeded"
PROTOCOL_VIOLATION = "wamp.error.protocol_violation"
NOT_AUTHORIZED = "wamp.error.not_authorized"
AUTHORIZATION_FAILED = "wamp.error.authorization_failed"
NO_SUCH_REALM = "wamp.error.no_such_realm"
NO_SUCH_ROLE = "wamp.error.no_such_role"
AUTHENTICATION_FAILED = "wamp.error.authentication_failed"
NO_AUTH_METHOD = "wamp.error.no_auth_method"

# -- errors (Advanced Profile; used once the features that need them exist)
NO_SUCH_SESSION = "wamp.error.no_such_session"
OPTION_NOT_ALLOWED = "wamp.error.option_not_allowed"
NETWORK_FAILURE = "wamp.error.network_failure"
TIMEOUT = "wamp.error.timeout"
NO_AVAILABLE_CALLEE = "wamp.error.no_available_callee"
UNAVAILABLE = "wamp.error.unavailable"
FEATURE_NOT_SUPPORTED = "wamp.error.feature_not_supported"
PROCEDURE_EXISTS_WITH_DIFFERENT_POLICY = (
    "wamp.error.procedure_exists_with_different_invocation_policy"
)
DISCLOSE_ME_DISALLOWED = "wamp.error.option_disallowed.disclose_me"

# -- serouter's own (documented in docs/reliability.md): a configured limit was reached
LIMIT_EXCEEDED = "serouter.error.limit_exceeded"
CLOSE_IDLE = "serouter.close.idle_timeout"  # GOODBYE reason: no message within idle_timeout

# -- session close reasons
SYSTEM_SHUTDOWN = "wamp.close.system_shutdown"
CLOSE_REALM = "wamp.close.close_realm"
GOODBYE_AND_OUT = "wamp.close.goodbye_and_out"
CLOSE_NORMAL = "wamp.close.normal"

# Loose URIs allow any non-whitespace component without "." or "#"; empty components are
# only allowed in patterns (later), never in concrete URIs. The router accepts loose URIs
# because real clients use mixed case and dashes; "wamp." is reserved for the router.
_LOOSE_URI = re.compile(r"^([^\s.#]+\.)*([^\s.#]+)\Z")
_STRICT_URI = re.compile(r"^([0-9a-z_]+\.)*([0-9a-z_]+)\Z")
# Patterns: a prefix may end in "." (or be empty: everything); a wildcard pattern may have
# empty components anywhere.
_PREFIX_PATTERN = re.compile(r"^([^\s.#]+\.)*([^\s.#]*)\Z")
_WILDCARD_PATTERN = re.compile(r"^([^\s.#]*\.)*([^\s.#]*)\Z")
RESERVED_PREFIX = "wamp."


def is_valid_uri(uri: object) -> bool:
    """A concrete (non-pattern) URI in WAMP's loose form."""
    return isinstance(uri, str) and _LOOSE_URI.match(uri) is not None


def is_valid_pattern(uri: str, match: str) -> bool:
    """A URI as written in REGISTER/SUBSCRIBE with the given match policy."""
    if match == "prefix":
        return _PREFIX_PATTERN.match(uri) is not None
    if match == "wildcard":
        return "." in uri and _WILDCARD_PATTERN.match(uri) is not None
    return _LOOSE_URI.match(uri) is not None


def is_strict_uri(uri: str) -> bool:
    """A URI in WAMP's strict form (lower-case letters, digits, ``_``): used for realm names."""
    return _STRICT_URI.match(uri) is not None


def is_reserved(uri: str) -> bool:
    """URIs under ``wamp.`` belong to the router (meta API); clients may not register them."""
    return uri.startswith(RESERVED_PREFIX)
