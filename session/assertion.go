package session

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/hkdf"
)

// Asserter signs short-lived identity assertions for upstreams — EdDSA JWTs an
// upstream can verify with the realm's published keys (/.auth/jwks.json) — so
// that an upstream reachable by other paths need not trust bare headers.
// Keys are derived from the realm's secrets, so every instance sharing the
// secrets signs with the same keys and a restart changes nothing. The first
// secret's key signs; all keys are published, for rotation.
type Asserter struct {
	keys []assertKey
}

type assertKey struct {
	kid  string
	priv ed25519.PrivateKey
}

// NewAsserter derives one Ed25519 key per secret, bound to the realm's name.
func NewAsserter(secrets []string, realm string) (*Asserter, error) {
	if len(secrets) == 0 {
		return nil, errors.New("no secret")
	}
	a := &Asserter{}
	for _, s := range secrets {
		seed := make([]byte, ed25519.SeedSize)
		r := hkdf.New(sha256.New, []byte(s), []byte("authgate upstream assertion"), []byte(realm))
		if _, err := io.ReadFull(r, seed); err != nil {
			return nil, err
		}
		priv := ed25519.NewKeyFromSeed(seed)
		jwk := jose.JSONWebKey{Key: priv.Public()}
		tp, err := jwk.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("assertion key thumbprint: %v", err)
		}
		a.keys = append(a.keys, assertKey{kid: base64.RawURLEncoding.EncodeToString(tp), priv: priv})
	}
	return a, nil
}

// Sign returns a JWT holding claims plus iat and exp (now + ttl).
func (a *Asserter) Sign(claims map[string]any, ttl time.Duration, now time.Time) (string, error) {
	mc := jwt.MapClaims{}
	for k, v := range claims {
		mc[k] = v
	}
	mc["iat"] = now.Unix()
	mc["exp"] = now.Add(ttl).Unix()
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, mc)
	t.Header["kid"] = a.keys[0].kid
	return t.SignedString(a.keys[0].priv)
}

// JWKS is the public key set, as /.auth/jwks.json serves it.
func (a *Asserter) JWKS() ([]byte, error) {
	set := jose.JSONWebKeySet{}
	for _, k := range a.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: "EdDSA", Use: "sig"})
	}
	return json.Marshal(set)
}
