package session

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/authgate/caddy-authgate/internal/testenv"
)

// authJS is @auth/core's codec, run in Node.
type authJS struct{ testenv.AuthJS }

func (a authJS) decode(t *testing.T, secret, salt, token string) (map[string]any, error) {
	t.Helper()
	out, err := a.Run(t, "decode", secret, salt, token)
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	if err := json.Unmarshal([]byte(out), &claims); err != nil {
		t.Fatalf("decoding @auth/core's output %q: %v", out, err)
	}
	return claims, nil
}

func (a authJS) encode(t *testing.T, secret, salt string, claims map[string]any) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	token, err := a.Run(t, "encode", secret, salt, string(b))
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func TestInteropAuthJS(t *testing.T) {
	a := authJS{testenv.NeedAuthJS(t)}
	for _, salt := range []string{"authjs.session-token", "__Secure-authjs.session-token"} {
		c := mustCodec(t, []string{testSecret}, salt, FormatAuthJS)

		t.Run(salt+"/authgate to Auth.js", func(t *testing.T) {
			now := time.Now()
			token := mustEncode(t, c, testClaims(), 30*day, now)
			got, err := a.decode(t, testSecret, salt, token)
			if err != nil {
				t.Fatal(err)
			}
			want, err := c.Decode(token, now)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("@auth/core decoded %v\nauthgate decoded %v", got, want)
			}
			for k, v := range testClaims() {
				if !reflect.DeepEqual(got[k], v) {
					t.Errorf("@auth/core decoded %s = %v, want %v", k, got[k], v)
				}
			}

			if _, err := a.decode(t, "other-secret", salt, token); err == nil {
				t.Error("@auth/core decoded the token with another secret")
			}
		})

		t.Run(salt+"/Auth.js to authgate", func(t *testing.T) {
			token := a.encode(t, testSecret, salt, testClaims())
			now := time.Now()
			if kid := header(t, token)["kid"]; kid != c.keys[0].kid {
				t.Errorf("@auth/core's kid = %v, authgate's = %s", kid, c.keys[0].kid)
			}
			got, err := c.Decode(token, now)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			for k, v := range testClaims() {
				if !reflect.DeepEqual(got[k], v) {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
			iat, _ := got["iat"].(float64)
			exp, _ := got["exp"].(float64)
			if d := now.Sub(time.Unix(int64(iat), 0)); d < 0 || d > time.Minute {
				t.Errorf("iat = %v, want about now (%d)", got["iat"], now.Unix())
			}
			if exp-iat != (30 * day).Seconds() {
				t.Errorf("exp - iat = %v s, want 30 days", exp-iat)
			}
			jti, _ := got["jti"].(string)
			if id, err := uuid.Parse(jti); err != nil || id.Version() != 4 {
				t.Errorf("jti = %v, want a UUID v4", got["jti"])
			}

			if _, err := mustCodec(t, []string{"other-secret"}, salt, FormatAuthJS).Decode(token, now); err == nil {
				t.Error("Decode succeeded with another secret")
			}
		})
	}
}
