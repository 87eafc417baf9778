"""punch's wire frames, as much as the lab's Python tools need: a signed registration
(wire version 2) and the server's answers to it, and an old client's (version 1)
registration. Mirrors `punch_proto::wire` and `punch_proto::auth`; the variant indices are
pinned by the Rust test `wire::tests::variant_indices_the_lab_tools_use`.

Signing uses the `cryptography` package (Ed25519), present on the lab machines.
"""
FRAME_TAG = 0x2A
WIRE_VERSION = 2
LEGACY_WIRE_VERSION = 1
REGISTER, REGISTERED, ERROR, CHALLENGE = 0, 1, 5, 20
ERROR_NAME_TAKEN, ERROR_BAD_REQUEST, ERROR_BAD_SIGNATURE = 1, 5, 6
NO_NONCE = bytes(16)
REGISTER_LABEL = b"punch-register-v2\0"


def varint(n):
    """LEB128, as postcard writes integers."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(buf, i):
    """(value, next index) of the varint at buf[i], or None."""
    value = shift = 0
    while i < len(buf) and shift < 70:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7
    return None


def signing_key(seed):
    """An Ed25519 key pair from 32 bytes: (private key, 32-byte public key)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    sk = Ed25519PrivateKey.from_private_bytes(seed)
    pk = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return sk, pk


def _fields(name, key, nonce):
    """The postcard of (name, key, no private addresses, no NAT type, nonce)."""
    name = name.encode()
    return varint(len(name)) + name + key + varint(0) + b"\x00" + nonce


def register(txn, name, sk, pk, nonce=NO_NONCE, sig=None):
    """A version-2 `Register` of `name` with key `pk`, no private addresses, signed by `sk`
    over `nonce` (unless `sig` is given: 64 bytes sent as the signature)."""
    fields = _fields(name, pk, nonce)
    if sig is None:
        sig = sk.sign(REGISTER_LABEL + fields) if sk is not None else bytes(64)
    return bytes([FRAME_TAG, WIRE_VERSION]) + varint(REGISTER) + varint(txn) + fields + sig


def legacy_register(txn, name, key):
    """A version-1 `Register`, as a client before signed registrations sent it."""
    name = name.encode()
    return (bytes([FRAME_TAG, LEGACY_WIRE_VERSION]) + varint(REGISTER) + varint(txn)
            + varint(len(name)) + name + key + varint(0))


def parse(data):
    """(version, variant, txn, rest) of a frame, or None."""
    if len(data) < 4 or data[0] != FRAME_TAG:
        return None
    v = read_varint(data, 2)
    if v is None:
        return None
    t = read_varint(data, v[1])
    if t is None:
        return None
    return data[1], v[0], t[0], data[t[1]:]


def challenge_nonce(data):
    """(txn, nonce) if `data` is a `Challenge`, else None."""
    p = parse(data)
    if p is None or p[0] != WIRE_VERSION or p[1] != CHALLENGE or len(p[3]) != 16:
        return None
    return p[2], p[3]


def error(data):
    """(version, txn, code, reason) if `data` is an `Error`, else None."""
    p = parse(data)
    if p is None or p[1] != ERROR or len(p[3]) < 2:
        return None
    code = p[3][0]
    n = read_varint(p[3], 1)
    if n is None:
        return None
    reason = p[3][n[1]:n[1] + n[0]].decode(errors="replace")
    return p[0], p[2], code, reason
