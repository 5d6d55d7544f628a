package session

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
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
}

type codecKey struct {
	kid string // empty for FormatNextAuthV4
	key []byte
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
	)
	switch format {
	case FormatAuthJS:
		enc, hkdfSalt, info, size = jose.A256CBC_HS512, salt, "Auth.js Generated Encryption Key ("+salt+")", 64
	case FormatNextAuthV4:
		enc, hkdfSalt, info, size = jose.A256GCM, "", "NextAuth.js Generated Encryption Key", 32
	default:
		return nil, fmt.Errorf("unknown session token format %d", format)
	}

	c := &Codec{enc: enc, keys: make([]codecKey, len(secrets))}
	for i, secret := range secrets {
		if secret == "" {
			return nil, fmt.Errorf("secret %d is empty", i)
		}
		key := make([]byte, size)
		if _, err := io.ReadFull(hkdf.New(sha256.New, []byte(secret), []byte(hkdfSalt), []byte(info)), key); err != nil {
			return nil, fmt.Errorf("deriving key %d: %v", i, err)
		}
		c.keys[i].key = key
		if format == FormatAuthJS {
			c.keys[i].kid = thumbprint(key)
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
	// With alg dir the JWE Encrypted Key must be empty (RFC 7516 §5.2 step 10, enforced by
	// Auth.js's jose); go-jose ignores it, so check it here. ParseEncryptedCompact checks
	// that there are exactly five parts.
	if _, rest, ok := strings.Cut(token, "."); ok && !strings.HasPrefix(rest, ".") {
		return nil, false, errors.New("invalid session token: unexpected JWE encrypted key")
	}
	obj, err := jose.ParseEncryptedCompact(token, []jose.KeyAlgorithm{jose.DIRECT}, []jose.ContentEncryption{c.enc})
	if err != nil {
		return nil, false, fmt.Errorf("invalid session token: %v", err)
	}

	plaintext, keyIndex, err := c.decrypt(obj)
	if err != nil {
		return nil, false, err
	}

	if err := json.Unmarshal(plaintext, &claims); err != nil || claims == nil {
		return nil, false, errors.New("invalid session token: claims are not a JSON object")
	}
	v := jwt.NewValidator(
		jwt.WithLeeway(clockTolerance),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(),
	)
	if err := v.Validate(jwt.MapClaims(claims)); err != nil {
		return nil, false, fmt.Errorf("invalid session token: %w", err)
	}
	return claims, keyIndex == 0, nil
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
