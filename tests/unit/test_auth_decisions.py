"""JWT decisions: the attack matrix refused, the right tokens accepted, no token ever echoed."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from hedgebridge.common import auth
from hedgebridge.common.auth import AuthError

SECRET = auth.new_secret()


def _claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "A1",
        "role": "ea",
        "iss": "hedgebridge",
        "aud": "hedgebridge",
        "iat": now,
        "exp": now + 60,
        "jti": "t-1",
    }
    for key, value in changes.items():
        if value is None:
            claims.pop(key)
        else:
            claims[key] = value
    return claims


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _refused(token: str) -> str:
    with pytest.raises(AuthError) as info:
        auth.authorize_terminal(f"Bearer {token}", SECRET)
    assert token not in info.value.reason
    return info.value.reason


def test_mint_and_verify() -> None:
    token = auth.mint_token(SECRET, role="ea", subject="A1", ttl_s=60)
    principal = auth.authorize_terminal(f"Bearer {token}", SECRET)
    assert (principal.subject, principal.role) == ("A1", "ea")
    assert principal.token_id
    assert principal.expires_at > time.time()
    admin = auth.verify_token(auth.mint_token(SECRET, role="admin", subject="ops"), SECRET)
    assert (admin.subject, admin.role) == ("ops", "admin")


def test_attack_matrix() -> None:
    assert _refused(auth.mint_token(SECRET, role="ea", subject="A1", ttl_s=10, now=time.time() - 3600)) == (
        "token expired"
    )
    assert _refused(auth.mint_token(auth.new_secret(), role="ea", subject="A1")) == "token signature invalid"
    unsigned = f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(_claims()).encode())}."
    assert _refused(unsigned) == "token algorithm not allowed"
    assert _refused(jwt.encode(_claims(), SECRET * 2, algorithm="HS512")) == "token algorithm not allowed"
    assert _refused(jwt.encode(_claims(exp=None), SECRET, algorithm="HS256")) == "token lacks the 'exp' claim"
    assert _refused(jwt.encode(_claims(sub=None), SECRET, algorithm="HS256")) == "token lacks the 'sub' claim"
    assert _refused(jwt.encode(_claims(jti=None), SECRET, algorithm="HS256")) == "token lacks the 'jti' claim"
    assert _refused(jwt.encode(_claims(aud="other"), SECRET, algorithm="HS256")) == "token audience not accepted"
    assert _refused(jwt.encode(_claims(iss="other"), SECRET, algorithm="HS256")) == "token issuer not accepted"
    assert _refused(jwt.encode(_claims(nbf=int(time.time()) + 3600), SECRET, algorithm="HS256")) == (
        "token not yet valid"
    )
    assert _refused(jwt.encode(_claims(iat=int(time.time()) + 3600), SECRET, algorithm="HS256")) == (
        "token not yet valid"
    )
    assert _refused(jwt.encode(_claims(role="root"), SECRET, algorithm="HS256")) == "token has no valid role"
    assert _refused(auth.mint_token(SECRET, role="system", subject="A1", accounts=["A1"])) == "token role is not 'ea'"
    assert _refused(jwt.encode(_claims(sub="a.b"), SECRET, algorithm="HS256")) == (
        "token subject is not a valid account id"
    )
    assert _refused("garbage") == "token invalid"


def test_authorization_header_forms() -> None:
    for header, reason in (
        (None, "missing Authorization header"),
        ("", "missing Authorization header"),
        ("Basic abc", "Authorization must be 'Bearer <token>'"),
        ("Bearer ", "Authorization must be 'Bearer <token>'"),
    ):
        with pytest.raises(AuthError) as info:
            auth.authorize_terminal(header, SECRET)
        assert info.value.reason == reason
    token = auth.mint_token(SECRET, role="ea", subject="A1")
    assert auth.authorize_terminal(f"bearer  {token} ", SECRET).subject == "A1"


def test_minting_rules() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        auth.mint_token("short", role="ea", subject="A1")
    with pytest.raises(ValueError, match="role must be"):
        auth.mint_token(SECRET, role="root", subject="A1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="account id"):
        auth.mint_token(SECRET, role="ea", subject="not valid")
    assert len(auth.new_secret().encode()) >= auth.MIN_SECRET_BYTES


# --- clock skew, revocation, session end --------------------------------------------------------------------


def test_small_clock_skew_is_tolerated_and_no_more() -> None:
    now = int(time.time())
    slightly_ahead = jwt.encode(_claims(iat=now + 3), SECRET, algorithm="HS256")
    assert auth.verify_token(slightly_ahead, SECRET, leeway_s=5).subject == "A1"
    with pytest.raises(AuthError, match="token not yet valid"):
        auth.verify_token(jwt.encode(_claims(iat=now + 30), SECRET, algorithm="HS256"), SECRET, leeway_s=5)
    just_expired = jwt.encode(_claims(iat=now - 60, exp=now - 2), SECRET, algorithm="HS256")
    assert auth.verify_token(just_expired, SECRET, leeway_s=5).subject == "A1"
    with pytest.raises(AuthError, match="token expired"):
        auth.verify_token(just_expired, SECRET, leeway_s=0)


def test_revoked_tokens_and_the_end_of_a_session() -> None:
    principal = auth.verify_token(auth.mint_token(SECRET, role="ea", subject="A1", ttl_s=60), SECRET)
    assert auth.check_revoked(principal, {"other"}) is principal
    with pytest.raises(AuthError, match="token revoked"):
        auth.check_revoked(principal, {principal.token_id})
    now = time.time()
    assert auth.session_end_reason(principal, now, set()) is None
    assert auth.session_end_reason(principal, principal.expires_at, set()) == "token expired"
    assert auth.session_end_reason(principal, now, {principal.token_id}) == "token revoked"
    assert auth.check_token_id(principal.token_id) == principal.token_id
    for bad in ("", "a b", "a" * 129, "x>y", "a*"):
        with pytest.raises(ValueError, match="token id"):
            auth.check_token_id(bad)


def test_role_and_scope_escalation_is_refused() -> None:
    # an ea token may not act as a client; a system token without scope is refused; a scope that is not a
    # list of names is refused; a forged admin claim fails the signature
    ea = auth.verify_token(auth.mint_token(SECRET, role="ea", subject="A1"), SECRET)
    with pytest.raises(AuthError, match="not 'system' or 'admin'"):
        auth.check_client(ea)
    unscoped = jwt.encode(_claims(role="system", sub="s1"), SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="must name the accounts"):
        auth.authorize_client(f"Bearer {unscoped}", SECRET)
    with pytest.raises(AuthError, match="must be a list of names"):
        auth.verify_token(jwt.encode(_claims(role="system", accounts="A1,A2"), SECRET, algorithm="HS256"), SECRET)
    system = auth.verify_token(auth.mint_token(SECRET, role="system", subject="s1", accounts=["A1"]), SECRET)
    assert system.may_use("A1")
    assert not system.may_use("A2")
    assert not system.is_admin
    forged = jwt.encode(_claims(role="admin"), auth.new_secret(), algorithm="HS256")
    with pytest.raises(AuthError, match="signature invalid"):
        auth.authorize_client(f"Bearer {forged}", SECRET)


# --- RS256 / ES256 with a public key or a JWKS --------------------------------------------------------------


def _rsa() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def _ec() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def _jwk(public_pem: bytes, algorithm: str, kid: str) -> dict[str, object]:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    loader = jwt.algorithms.RSAAlgorithm if algorithm == "RS256" else jwt.algorithms.ECAlgorithm
    jwk: dict[str, object] = json.loads(loader.to_jwk(load_pem_public_key(public_pem)))  # type: ignore[arg-type]
    jwk.update(kid=kid, use="sig", alg=algorithm)
    return jwk


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_public_key_tokens(algorithm: str) -> None:
    private, public = _rsa() if algorithm == "RS256" else _ec()
    keys = auth.public_key(algorithm, public)  # type: ignore[arg-type]
    good = jwt.encode(_claims(), private, algorithm=algorithm)
    assert auth.authorize_terminal(f"Bearer {good}", keys).subject == "A1"
    other_private, _ = _rsa() if algorithm == "RS256" else _ec()
    with pytest.raises(AuthError, match="signature invalid"):
        auth.verify_token(jwt.encode(_claims(), other_private, algorithm=algorithm), keys)
    # HS256 "signed" with the public key as the secret (algorithm confusion), HS256 with the default secret
    confused = jwt.encode(_claims(), SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="algorithm not allowed"):
        auth.verify_token(confused, keys)
    unsigned = f"{_b64(json.dumps({'alg': 'none'}).encode())}.{_b64(json.dumps(_claims()).encode())}."
    with pytest.raises(AuthError, match="algorithm not allowed"):
        auth.verify_token(unsigned, keys)
    with pytest.raises(AuthError, match="token expired"):
        auth.verify_token(jwt.encode(_claims(iat=1, exp=2), private, algorithm=algorithm), keys)
    # the HS256 key set refuses the asymmetric token
    with pytest.raises(AuthError, match="algorithm not allowed"):
        auth.verify_token(good, SECRET)


def test_public_key_files_are_checked() -> None:
    private, public = _rsa()
    with pytest.raises(ValueError, match="not the private key"):
        auth.public_key("RS256", private)
    with pytest.raises(ValueError, match="not a PEM public key"):
        auth.public_key("RS256", b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ValueError, match="RS256 or ES256"):
        auth.public_key("HS256", public)
    _, ec_public = _ec()
    with pytest.raises(ValueError, match="not a PEM public key for RS256"):
        auth.public_key("RS256", ec_public)


def test_jwks_keys_are_chosen_by_kid() -> None:
    private_1, public_1 = _rsa()
    private_2, public_2 = _rsa()
    _, ec_public = _ec()
    document = {"keys": [_jwk(public_1, "RS256", "k1"), _jwk(public_2, "RS256", "k2"), _jwk(ec_public, "ES256", "e1")]}
    keys = auth.keys_from_jwks("RS256", document)
    assert sorted(str(kid) for kid, _ in keys.keys) == ["k1", "k2"]  # the EC key is not for RS256
    for kid, private in (("k1", private_1), ("k2", private_2)):
        token = jwt.encode(_claims(), private, algorithm="RS256", headers={"kid": kid})
        assert auth.verify_token(token, keys).subject == "A1"
    swapped = jwt.encode(_claims(), private_1, algorithm="RS256", headers={"kid": "k2"})
    with pytest.raises(AuthError, match="signature invalid"):
        auth.verify_token(swapped, keys)
    with pytest.raises(auth.UnknownKeyId, match="key id unknown"):
        auth.verify_token(jwt.encode(_claims(), private_1, algorithm="RS256", headers={"kid": "k9"}), keys)
    with pytest.raises(auth.UnknownKeyId):  # several keys: a token must say which
        auth.verify_token(jwt.encode(_claims(), private_1, algorithm="RS256"), keys)
    single = auth.keys_from_jwks("ES256", json.dumps(document))
    assert [kid for kid, _ in single.keys] == ["e1"]
    with pytest.raises(ValueError, match="no EC signing key"):
        auth.keys_from_jwks("ES256", {"keys": [_jwk(public_1, "RS256", "k1")]})
    with pytest.raises(ValueError, match="not a usable JWKS"):
        auth.keys_from_jwks("RS256", b"[1, 2]")


# --- claims that name things are checked with the protocol's rules ----------------------------------------


def _system(**changes: object) -> str:
    claims = _claims(**{"role": "system", "sub": "hedge-1", "accounts": ["A1"], **changes})
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.mark.parametrize("account", ["*", ">", "A1.>", "A.B", "A B", "A1\n", "", "x" * 65, 7])
def test_a_scope_that_names_no_account_is_refused(account: object) -> None:
    with pytest.raises(AuthError, match=r"token claim 'accounts' (holds a name that is not valid|must be a list)"):
        auth.authorize_client(f"Bearer {_system(accounts=['A1', account])}", SECRET)


def test_users_sub_and_jti_are_checked_and_a_scope_gives_only_what_it_names() -> None:
    for bad_user in ("", "u" * 129):
        with pytest.raises(AuthError, match="'users' holds a name that is not valid"):
            auth.verify_token(_system(users=[bad_user]), SECRET)
    with pytest.raises(AuthError, match="must be a list of names"):
        auth.verify_token(_system(accounts=["A1"] * 10_001), SECRET)
    for bad_subject in ("", "s" * 129):
        with pytest.raises(AuthError, match="subject is not a valid user name"):
            auth.verify_token(_system(sub=bad_subject), SECRET)
    for bad_jti in ("a b", "*", ">", "a..b", ".a", "a.", "j" * 129, "a/b"):
        with pytest.raises(AuthError, match=r"token id \(jti\) is not valid"):
            auth.verify_token(_system(jti=bad_jti), SECRET)
    # a user named "*" is a user called "*": users are compared exactly
    starred = auth.verify_token(_system(users=["*"]), SECRET)
    assert starred.may_watch_user("*")
    assert not starred.may_watch_user("u-1")
    # only a system token has a scope: accounts and users on other roles give nothing
    ea = auth.verify_token(jwt.encode(_claims(accounts=["B2"], users=["u"]), SECRET, algorithm="HS256"), SECRET)
    assert (ea.accounts, ea.users, ea.may_use("B2"), ea.may_use("A1")) == (frozenset(), frozenset(), False, True)
    admin = auth.verify_token(_system(role="admin", accounts=["A1"]), SECRET)
    assert admin.accounts == frozenset()
    assert admin.is_admin


def test_every_token_id_a_token_may_carry_can_be_revoked_and_no_other() -> None:
    for jti in ("t-1", "a.b.c", "x=y_z-0", "J" * 128, "0.1"):
        principal = auth.verify_token(_system(jti=jti), SECRET)
        assert auth.check_token_id(principal.token_id) == jti
    for jti in ("a..b", ".a", "a.", "a b", "a*", "j" * 129, "", "a/b"):
        with pytest.raises(ValueError, match="token id"):
            auth.check_token_id(jti)


def test_minting_refuses_what_the_gateway_would_refuse() -> None:
    with pytest.raises(ValueError, match="not valid account ids"):
        auth.mint_token(SECRET, role="system", subject="s", accounts=["*"])
    with pytest.raises(ValueError, match="user names"):
        auth.mint_token(SECRET, role="system", subject="s", users=[""])
    with pytest.raises(ValueError, match="subject"):
        auth.mint_token(SECRET, role="admin", subject="")


def test_a_new_secret_never_begins_with_a_dash() -> None:
    # a secret given as `--secret VALUE` must not look like an option (1 in 64 base64 strings begins with "-")
    made = [auth.new_secret() for _ in range(2000)]
    assert not [s for s in made if s.startswith("-")]
    assert all(len(s.encode()) >= auth.MIN_SECRET_BYTES for s in made)
