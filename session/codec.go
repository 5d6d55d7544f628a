package session

import (
	"bytes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"golang.org/x/crypto/hkdf"
)

// Format selects the token format of an Auth.js generation.
type Format int

const (
	// FormatAuthJS is @auth/core's (Auth.js v5) format: enc A256CBC-HS512, key =
	// HKDF-SHA256(secret, salt, info "Auth.js Generated Encryption Key (<salt>)", 64 bytes),
	// kid = RFC 7638 thumbprint of the key with SHA-512.
	FormatAuthJS Format = iota
	// FormatNextAuthV4 is NextAuth v4's format: enc A256GCM, key = HKDF-SHA256(secret,
	// salt "", info "NextAuth.js Generated Encryption Key", 32 bytes), no kid.
	FormatNextAuthV4
)

// clockTolerance is Auth.js's clockTolerance for exp, nbf and iat.
const clockTolerance = 15 * time.Second

// Codec encrypts and decrypts JWE tokens exactly as @auth/core's jwt encode()/decode() do.
// A Codec is safe for concurrent use.
type Codec struct {
	enc       jose.ContentEncryption
	keys      []codecKey // keys[0] encrypts
	encrypter jose.Encrypter
	// the fast path's (codec_fast.go): the tag's least length and `"<enc>"`
	tagSize   int
	quotedEnc []byte
}

type codecKey struct {
	kid string // empty for FormatNextAuthV4
	key []byte
	// header is the protected header Encode writes with this key (base64url),
	// headerBytes the same bytes, the AAD; aead opens the format's enc with key.
	header      string
	headerBytes []byte
	aead        cipher.AEAD
}

// NewCodec derives one key per secret; the first secret encrypts, all decrypt. salt is the
// cookie name (Auth.js uses the cookie name as salt); FormatNextAuthV4 ignores it, as NextAuth
// v4 derives session keys with an empty salt.
func NewCodec(secrets []string, salt string, format Format) (*Codec, error) {
	if len(secrets) == 0 {
		return nil, errors.New("no secret")
	}
	var (
		enc      jose.ContentEncryption
		hkdfSalt string
		info     string
		size     int
		tagSize  int
	)
	switch format {
	case FormatAuthJS:
		enc, hkdfSalt, info, size, tagSize = jose.A256CBC_HS512, salt, "Auth.js Generated Encryption Key ("+salt+")", 64, 32
	case FormatNextAuthV4:
		enc, hkdfSalt, info, size, tagSize = jose.A256GCM, "", "NextAuth.js Generated Encryption Key", 32, 16
	default:
		return nil, fmt.Errorf("unknown session token format %d", format)
	}

	c := &Codec{enc: enc, keys: make([]codecKey, len(secrets)), tagSize: tagSize, quotedEnc: []byte(`"` + string(enc) + `"`)}
	for i, secret := range secrets {
		if secret == "" {
			return nil, fmt.Errorf("secret %d is empty", i)
		}
		key := make([]byte, size)
		if _, err := io.ReadFull(hkdf.New(sha256.New, []byte(secret), []byte(hkdfSalt), []byte(info)), key); err != nil {
			return nil, fmt.Errorf("deriving key %d: %v", i, err)
		}
		k := &c.keys[i]
		k.key = key
		if format == FormatAuthJS {
			k.kid = thumbprint(key)
		}
		k.header = protectedHeader(enc, k.kid)
		k.headerBytes = []byte(k.header)
		var err error
		if k.aead, err = newAEAD(enc, key); err != nil {
			return nil, fmt.Errorf("key %d: %v", i, err)
		}
	}

	encrypter, err := jose.NewEncrypter(enc, jose.Recipient{Algorithm: jose.DIRECT, Key: c.keys[0].key, KeyID: c.keys[0].kid}, nil)
	if err != nil {
		return nil, fmt.Errorf("creating encrypter: %v", err)
	}
	c.encrypter = encrypter
	return c, nil
}

// thumbprint is the RFC 7638 thumbprint of a symmetric key, hashed with SHA-512 as @auth/core
// does for its 64-byte key (go-jose's JSONWebKey.Thumbprint does not support "oct" keys). The
// canonical JSON of an oct key has only the members "k" and "kty", in that order, and
// base64url text needs no escaping.
func thumbprint(key []byte) string {
	sum := sha512.Sum512([]byte(`{"k":"` + base64.RawURLEncoding.EncodeToString(key) + `","kty":"oct"}`))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Encode sets iat=now, exp=now+maxAge, jti=uuid v4 (overwriting any given), keeps all other
// claims, and returns a compact JWE with header {alg:"dir", enc, kid}. claims is not modified.
func (c *Codec) Encode(claims map[string]any, maxAge time.Duration, now time.Time) (string, error) {
	payload := make(map[string]any, len(claims)+3)
	for k, v := range claims {
		payload[k] = v
	}
	// Whole seconds, as Auth.js writes them.
	payload["iat"] = now.Unix()
	payload["exp"] = now.Unix() + int64(maxAge/time.Second)
	payload["jti"] = uuid.NewString()

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // JSON.stringify does not escape <, > and &; keeps tokens short
	if err := enc.Encode(payload); err != nil {
		return "", fmt.Errorf("encoding claims: %v", err)
	}
	obj, err := c.encrypter.Encrypt(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	if err != nil {
		return "", fmt.Errorf("encrypting session token: %v", err)
	}
	return obj.CompactSerialize()
}

// Decode tries the key named by kid (or all keys when kid is missing or unknown), accepts
// only alg dir and the format's enc, validates exp, nbf and iat at time now with Auth.js's
// 15 s leeway, requires exp, and returns the claims. Numbers in the claims are float64.
func (c *Codec) Decode(token string, now time.Time) (map[string]any, error) {
	claims, _, err := c.DecodeKey(token, now)
	return claims, err
}

// DecodeKey is Decode that also reports whether the token was encrypted with the
// current (first) secret; a token made with an older secret is worth re-issuing.
func (c *Codec) DecodeKey(token string, now time.Time) (claims map[string]any, current bool, err error) {
	return c.decodeKey(token, now, true)
}

// decodeKey is DecodeKey; fast=false leaves every token to go-jose's full parse
// (the fuzz test holds the two ways to the same answers).
func (c *Codec) decodeKey(token string, now time.Time, fast bool) (claims map[string]any, current bool, err error) {
	plaintext, keyIndex, buf, err := c.open(token, fast)
	if err != nil {
		return nil, false, err
	}
	claims, err = decodeClaims(plaintext)
	releaseBuffer(buf)
	if err != nil {
		return nil, false, err
	}
	if err := validate(jwt.MapClaims(claims), now); err != nil {
		return nil, false, fmt.Errorf("invalid session token: %w", err)
	}
	return claims, keyIndex == 0, nil
}

// open decrypts a token, returning its plaintext (valid until buf is
// released, see releaseBuffer) and the index of the key that opened it.
func (c *Codec) open(token string, fast bool) (plaintext []byte, keyIndex int, buf *[]byte, err error) {
	// With alg dir the JWE Encrypted Key must be empty (RFC 7516 §5.2 step 10, enforced by
	// Auth.js's jose); go-jose ignores it, so check it here. ParseEncryptedCompact checks
	// that there are exactly five parts.
	if _, rest, ok := strings.Cut(token, "."); ok && !strings.HasPrefix(rest, ".") {
		return nil, -1, nil, errors.New("invalid session token: unexpected JWE encrypted key")
	}
	err = errNotFast
	if fast {
		plaintext, keyIndex, buf, err = c.openFast(token)
		if err == errNotFast {
			if header, _, _ := strings.Cut(token, "."); !c.mayBeAccepted(header) {
				return nil, -1, nil, errHeader
			}
		}
	}
	if err == errNotFast {
		plaintext, keyIndex, err = c.openJOSE(token)
	}
	if err != nil {
		return nil, -1, nil, err
	}
	return plaintext, keyIndex, buf, nil
}

// validator is golang-jwt's Validator with Auth.js's rules, for one time at a
// time: it is pooled, not made per token.
type validator struct {
	now time.Time
	v   *jwt.Validator
}

var validators = sync.Pool{New: func() any {
	pv := new(validator)
	pv.v = jwt.NewValidator(
		jwt.WithLeeway(clockTolerance),
		jwt.WithTimeFunc(func() time.Time { return pv.now }),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(),
	)
	return pv
}}

// validate checks exp (required), nbf and iat at now with Auth.js's leeway:
// of a decoded map (jwt.MapClaims) or of DecodeToken's timeClaims.
func validate(claims jwt.Claims, now time.Time) error {
	pv := validators.Get().(*validator)
	pv.now = now
	err := pv.v.Validate(claims)
	validators.Put(pv)
	return err
}

// openJOSE opens a token with go-jose's full parse: any header go-jose accepts
// for alg dir and the format's enc (tokens without kid, other writers' headers).
func (c *Codec) openJOSE(token string) ([]byte, int, error) {
	obj, err := jose.ParseEncryptedCompact(token, []jose.KeyAlgorithm{jose.DIRECT}, []jose.ContentEncryption{c.enc})
	if err != nil {
		return nil, -1, fmt.Errorf("invalid session token: %v", err)
	}
	return c.decrypt(obj)
}

// Claims are decoded as JSON.parse decodes Auth.js's, into what encoding/json
// would make of them (map[string]any, []any, string, float64, bool, nil), with
// jsontext's tokenizer and no reflection: invalid UTF-8 becomes U+FFFD, as in
// both; a duplicated name is refused (JSON.stringify never writes one, and two
// readers that pick different duplicates are a classic way to smuggle a claim),
// as is a number out of float64's range. jsontext bounds the nesting depth.
var claimsOptions = jsontext.AllowInvalidUTF8(true)

// claimsDecoder is a reusable jsontext.Decoder over a plaintext.
type claimsDecoder struct {
	in  bytes.Buffer // jsontext reads a *bytes.Buffer in place
	dec jsontext.Decoder
}

var claimsDecoders = sync.Pool{New: func() any { return new(claimsDecoder) }}

var errClaims = errors.New("invalid session token: claims are not a JSON object")

// decodeClaims decodes a token's plaintext, which must be a JSON object. It
// copies what it keeps: plaintext may be reused afterwards.
func decodeClaims(plaintext []byte) (map[string]any, error) {
	cd := claimsDecoders.Get().(*claimsDecoder)
	defer claimsDecoders.Put(cd)
	cd.in = *bytes.NewBuffer(plaintext)
	cd.dec.Reset(&cd.in, claimsOptions)
	defer func() { // let go of plaintext
		cd.in = bytes.Buffer{}
		cd.dec.Reset(&cd.in)
	}()
	if cd.dec.PeekKind() != '{' {
		return nil, errClaims
	}
	v, err := readJSON(&cd.dec)
	if err != nil {
		return nil, errClaims
	}
	if _, err := cd.dec.ReadToken(); err != io.EOF {
		return nil, errClaims // a second value or trailing bytes
	}
	return v.(map[string]any), nil
}

// claimName is an object member's name from its raw JSON string: the names
// every token has are constants, not an allocation each.
func claimName(raw jsontext.Value) string {
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') >= 0 || !utf8.Valid(inner) {
		name, _ := jsontext.AppendUnquote(nil, raw) // invalid UTF-8 becomes U+FFFD, as with AllowInvalidUTF8
		return string(name)
	}
	switch string(inner) {
	case "sub":
		return "sub"
	case "name":
		return "name"
	case "email":
		return "email"
	case "picture":
		return "picture"
	case "iat":
		return "iat"
	case "exp":
		return "exp"
	case "jti":
		return "jti"
	case "sid":
		return "sid"
	}
	return string(inner)
}

// readJSON reads the decoder's next value.
func readJSON(d *jsontext.Decoder) (any, error) {
	tok, err := d.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case '{':
		m := make(map[string]any)
		for d.PeekKind() != '}' {
			raw, err := d.ReadValue() // valid until the next read
			if err != nil {
				return nil, err
			}
			name := claimName(raw)
			v, err := readJSON(d)
			if err != nil {
				return nil, err
			}
			m[name] = v
		}
		_, err = d.ReadToken()
		return m, err
	case '[':
		a := []any{}
		for d.PeekKind() != ']' {
			v, err := readJSON(d)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err = d.ReadToken()
		return a, err
	case '"':
		return tok.String(), nil
	case '0':
		f, err := readNumber(tok)
		if err != nil {
			return nil, err
		}
		return f, nil
	case 't', 'f':
		return tok.Bool(), nil
	}
	return nil, nil // 'n': null
}

// decrypt returns the plaintext and the index of the key that decrypted it.
func (c *Codec) decrypt(obj *jose.JSONWebEncryption) ([]byte, int, error) {
	if kid := obj.Header.KeyID; kid != "" {
		for i, k := range c.keys {
			if k.kid == kid {
				plaintext, err := decryptWith(obj, k.key)
				return plaintext, i, err
			}
		}
	}
	for i, k := range c.keys {
		if plaintext, err := decryptWith(obj, k.key); err == nil {
			return plaintext, i, nil
		}
	}
	return nil, -1, errors.New("invalid session token: no key decrypts it")
}

func decryptWith(obj *jose.JSONWebEncryption, key []byte) ([]byte, error) {
	plaintext, err := obj.Decrypt(key)
	if err != nil {
		return nil, fmt.Errorf("invalid session token: %v", err)
	}
	return plaintext, nil
}
