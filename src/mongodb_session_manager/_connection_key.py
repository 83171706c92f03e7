"""What makes two connection requests the same: deployment, credentials and options, compared as pymongo reads them.

Option names are case-insensitive (``appName`` and ``appname`` are one option) and may come from the
URI or from keyword arguments; values are validated the way pymongo validates them, so
``retryWrites=true`` in the URI equals ``retryWrites=True`` as a keyword. Hosts are lower-cased,
given their default port and sorted. The URI is split with pymongo's public parsers, without the
DNS lookup a ``mongodb+srv`` URI needs: its host name is the key.
"""

from collections.abc import Hashable, Mapping
from typing import Any
from urllib.parse import unquote_plus

from pymongo import common, uri_parser
from pymongo.errors import ConfigurationError, InvalidURI

from .errors import InvalidArgumentError

SCHEMES = ("mongodb://", "mongodb+srv://")
SECRET_OPTIONS = frozenset({"password", "authmechanismproperties", "tlscertificatekeyfilepassword", "proxypassword"})
"""Client options (lower-cased) whose values are credentials: never shown."""
MASK = "***"


def connection_key(connection_string: str, settings: Mapping[str, Any]) -> Hashable:
    """A value equal for two requests that would open clients to the same deployment with the same options."""
    scheme, credentials, nodes, database, uri_options = _split(connection_string)
    options = {name.lower(): _frozen(value) for name, value in uri_options.items()}
    options.update({name.lower(): _frozen(_validated(name, value)) for name, value in settings.items()})
    return (scheme, tuple(sorted(nodes)), credentials, database, tuple(sorted(options.items())))


def uri_option_names(connection_string: str) -> set[str]:
    """The options ``connection_string`` sets, lower-cased."""
    return {name.lower() for name in _split(connection_string)[4]}


def _split(connection_string: str) -> tuple[str, Any, list[Any], str, Mapping[str, Any]]:
    """Scheme, credentials, hosts, database and options of a URI, validated as pymongo validates them."""
    scheme, _, rest = connection_string.partition("://")
    if f"{scheme}://" not in SCHEMES:
        raise InvalidArgumentError("connection_string", masked_uri(connection_string), "must start with mongodb://")
    hosts_and_path, _, query = rest.partition("?")
    hosts, _, database = hosts_and_path.partition("/")
    userinfo, _, hosts = hosts.rpartition("@")
    try:
        credentials = uri_parser.parse_userinfo(userinfo) if userinfo else None
        nodes = uri_parser.split_hosts(hosts, default_port=None if scheme == "mongodb+srv" else 27017)
        options = uri_parser.split_options(query, validate=True, warn=False, normalize=True) if query else {}
    except (ConfigurationError, InvalidURI, ValueError, OSError) as error:  # OSError: a TLS file it cannot read
        reason = scrubbed(str(error), connection_string)
        raise InvalidArgumentError("connection_string", masked_uri(connection_string), reason) from None
    return scheme, credentials, nodes, unquote_plus(database), options


def _validated(name: str, value: Any) -> Any:
    """``value`` as pymongo would read it (``"5"`` for ``maxPoolSize`` is 5); as given if pymongo does not know it."""
    try:
        return common.validate(name, value)[1]
    except (ConfigurationError, TypeError, ValueError, OSError):
        return value


def _frozen(value: Any) -> Hashable:
    """A hashable stand-in for an option value; objects without value semantics stand for themselves."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(key), _frozen(item)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_frozen(item) for item in value)
    try:
        hash(value)
    except TypeError:
        return ("object", id(value))
    hashable: Hashable = value
    return hashable


def masked_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` safe to show: credential-bearing values replaced by ``***``."""
    return {name: MASK if name.lower() in SECRET_OPTIONS else value for name, value in settings.items()}


def masked_uri(uri: str) -> str:
    """``uri`` safe to show: user information and credential-bearing options replaced by ``***``.

    User information is everything up to the last ``@`` before the options, so a password holding
    an unescaped ``/`` or ``@`` is masked whole.
    """
    scheme, separator, rest = uri.partition("://") if "://" in uri else ("", "", uri)
    head, question, query = rest.partition("?")
    if "@" in head:
        head = f"{MASK}@{head.rpartition('@')[2]}"
    options = "&".join(_masked_option(pair) for pair in query.split("&")) if query else ""
    return f"{scheme}{separator}{head}{question}{options}"


def _masked_option(pair: str) -> str:
    name, equals, _value = pair.partition("=")
    return f"{name}={MASK}" if equals and name.lower() in SECRET_OPTIONS else pair


def scrubbed(text: str, uri: str) -> str:
    """``text`` (an error message about ``uri``) with every credential of ``uri`` replaced by ``***``."""
    rest = uri.partition("://")[2] or uri
    head, _, query = rest.partition("?")
    secrets = []
    if "@" in head:
        userinfo = head.rpartition("@")[0]
        password = userinfo.partition(":")[2]
        secrets += [userinfo, password, unquote_plus(password)]
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name.lower() in SECRET_OPTIONS:
            secrets += [value, unquote_plus(value)]
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
