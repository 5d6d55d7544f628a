package session

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
)

const (
	testSecret = "test-secret-not-for-production"
	testSalt   = "authjs.session-token"
	day        = 24 * time.Hour
)

var testNow = time.Unix(1700000000, 0)

func testClaims() map[string]any {
	return map[string]any{
		"name":  "Ada Lovelace",
		"email": "ada@example.com",
		"sub":   "user-1",
		"org":   map[string]any{"roles": []any{"admin", "dev"}, "level": 3.0},
		"note":  "<b>&</b>",
	}
}

func mustCodec(t testing.TB, secrets []string, salt string, format Format) *Codec {
	t.Helper()
	c, err := NewCodec(secrets, salt, format)
	if err != nil {
		t.Fatalf("NewCodec: %v", err)
	}
	return c
}

func mustEncode(t testing.TB, c *Codec, claims map[string]any, maxAge time.Duration, now time.Time) string {
	t.Helper()
	token, err := c.Encode(claims, maxAge, now)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return token
}

// header returns the decoded protected header of a compact JWE.
func header(t testing.TB, token string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatalf("decoding header: %v", err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("decoding header: %v", err)
	}
	return h
}

// rawToken encrypts payload with an arbitrary key, enc and kid, to make tokens that Encode
// never would.
func rawToken(t testing.TB, alg jose.KeyAlgorithm, key []byte, enc jose.ContentEncryption, kid string, payload string) string {
	t.Helper()
	e, err := jose.NewEncrypter(enc, jose.Recipient{Algorithm: alg, Key: key, KeyID: kid}, nil)
	if err != nil {
		t.Fatalf("NewEncrypter: %v", err)
	}
	obj, err := e.Encrypt([]byte(payload))
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	token, err := obj.CompactSerialize()
	if err != nil {
		t.Fatalf("CompactSerialize: %v", err)
	}
	return token
}

func TestCodecRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		format  Format
		enc     string
		wantKid bool
	}{
		{"authjs", FormatAuthJS, "A256CBC-HS512", true},
		{"nextauth-v4", FormatNextAuthV4, "A256GCM", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCodec(t, []string{testSecret}, testSalt, tc.format)
			in := testClaims()
			in["iat"], in["exp"], in["jti"] = 1.0, 2.0, "given"
			inCopy := maps.Clone(in)

			token := mustEncode(t, c, in, 30*day, testNow)
			if !reflect.DeepEqual(in, inCopy) {
				t.Errorf("Encode modified its claims: %v", in)
			}

			h := header(t, token)
			if h["alg"] != "dir" || h["enc"] != tc.enc {
				t.Errorf("header = %v, want alg dir, enc %s", h, tc.enc)
			}
			if _, ok := h["kid"]; ok != tc.wantKid {
				t.Errorf("header = %v, want kid: %v", h, tc.wantKid)
			}
			if parts := strings.Split(token, "."); len(parts) != 5 || parts[1] != "" {
				t.Errorf("token %q is not a compact JWE with an empty encrypted key", token)
			}

			got, err := c.Decode(token, testNow.Add(29*day))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			jti, _ := got["jti"].(string)
			if id, err := uuid.Parse(jti); err != nil || id.Version() != 4 {
				t.Errorf("jti = %q, want a UUID v4", got["jti"])
			}
			want := testClaims()
			want["iat"] = float64(testNow.Unix())
			want["exp"] = float64(testNow.Add(30 * day).Unix())
			want["jti"] = jti
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Decode = %v\nwant %v", got, want)
			}

			if other := mustEncode(t, c, in, 30*day, testNow); other == token {
				t.Error("two encodings are equal; want a fresh IV and jti each time")
			}
		})
	}
}

// Known answers from @auth/core 0.41.3 and from NextAuth v4's encode() (jose + @panva/hkdf,
// as next-auth/jwt v4 does), so the key derivation is pinned even where node is missing.
func TestCodecKnownAnswers(t *testing.T) {
	t.Run("authjs key and kid", func(t *testing.T) {
		for salt, want := range map[string]struct{ key, kid string }{
			"authjs.session-token": {
				"1d3c98a914966ee063fded7260af814a8009132fc1bb4b65614022ed81e27406dc5648f13830ecc48fb144537e3f55ce5135795bedb48b9f5667dceb060180a6",
				"w9NU0LSje_7QsTaWRlXBhtf6MPmxUyB3Lt1mxMXFIkSetlwpcv2uJBnbPq-95rHgdhzNdFYGW5Iy3H72gjZplQ",
			},
			"__Secure-authjs.session-token": {
				"4abfd429b5f78cf871cb8e032ae95d42230b6eb9fab157f3dc8a121ae509a57267b8477745309289b272621225b346d3c4a87783385a7db188f7bd0a3585f221",
				"LZK-GceRcyh-ZMglQ-dNq6hKvJvIi0tyvYqTS2HwrjR08vVB8IV50lCAw64LswgESHNOh6Wqfla6rvKu3CEJ5A",
			},
		} {
			c := mustCodec(t, []string{testSecret}, salt, FormatAuthJS)
			if got := hex.EncodeToString(c.keys[0].key); got != want.key {
				t.Errorf("salt %s: key = %s, want %s", salt, got, want.key)
			}
			if c.keys[0].kid != want.kid {
				t.Errorf("salt %s: kid = %s, want %s", salt, c.keys[0].kid, want.kid)
			}
			if h := header(t, mustEncode(t, c, nil, day, testNow)); h["kid"] != want.kid {
				t.Errorf("salt %s: header kid = %v, want %s", salt, h["kid"], want.kid)
			}
		}
	})

	for _, tc := range []struct {
		name   string
		format Format
		salt   string
		token  string
	}{
		{"authjs", FormatAuthJS, "authjs.session-token", "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIiwia2lkIjoidzlOVTBMU2plXzdRc1RhV1JsWEJodGY2TVBteFV5QjNMdDFteE1YRklrU2V0bHdwY3YydUpCbmJQcS05NXJIZ2Roek5kRllHVzVJeTNINzJnalpwbFEifQ..QjZ6jU2fOfApFv8Xj-m36w.vkJPIy4joiNvgKKJ-AOll7ISlf7_M4tbDJnjlPpkjXn5RdIY8bH029gVPXQID8FdqHTaelAtDiBFT0nvCKJqVwjVrcs8vtUm3FyJP7__4Mx6wthe17Rtmyh1w95x0B6Z-kHF_Bkja6QA_Kc67ETe-n4IQWOi7AkG_w6NdBusFfseeCZfZZBJ3VloV2DOYtk4.AhDSgx65N8o7z2qbdDA_j3j_kmSoigVuVlmfYuT8VIc"},
		{"authjs secure", FormatAuthJS, "__Secure-authjs.session-token", "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIiwia2lkIjoiTFpLLUdjZVJjeWgtWk1nbFEtZE5xNmhLdkp2SWkwdHl2WXFUUzJId3JqUjA4dlZCOElWNTBsQ0F3NjRMc3dnRVNITk9oNldxZmxhNnJ2S3UzQ0VKNUEifQ..rWLpATm4E3ZFKNlp9ZWLcA.WM1Y9Kn6Y6nnB-cWrfdbHVXHpCWchaQZWPXCb77CJLohS0ff__iIOV1TjX7xraxYT48pzpwh44l-7SB4NQCGRdUZVRy3lpiUjyL5PH9iPc1P6pDMnvcaTbiwkvoX8KUA1Ic3_BvC0N_0oQNJElo9TIG7OuzzhrLOLdHxOvbQWuf-7svg402GYiO2l6sTogNT.prTMFIip1ioTXq7qAHGvL4ps_-LJKWBOMBPdhQ7wL8k"},
		// The salt is ignored: NextAuth v4 session tokens use an empty one.
		{"nextauth-v4", FormatNextAuthV4, "next-auth.session-token", "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..-NDiZw2jlAh5IGxO.Lq1k-yx-shhhHO4gTo0Auu5tCo2Pg3P1uywi9ZVMa9gP71lRbFwtZWOZ6H0AI2VkkVjc_dG1ORtK0QK7PWwvM6hbb7Zq_sNLg1zw7M6IOrsvf0jcN51ntkkPoaJlqvIWBSNW97ZNoTDcFQcomPYBpL9cUtB4ZBeM9yu4CFr2MPhrD7IHi6xaZBF6PSoVVe0.HXsjf5_cSgzbnJc-bKKs1w"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCodec(t, []string{testSecret}, tc.salt, tc.format)
			got, err := c.Decode(tc.token, testNow.Add(time.Hour))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			for k, want := range map[string]any{
				"name": "Ada Lovelace", "email": "ada@example.com", "sub": "user-1",
				"iat": float64(testNow.Unix()), "exp": float64(testNow.Add(30 * day).Unix()),
			} {
				if got[k] != want {
					t.Errorf("%s = %v, want %v", k, got[k], want)
				}
			}
		})
	}
}

func TestCodecSecretRotation(t *testing.T) {
	oldCodec := mustCodec(t, []string{"old-secret"}, testSalt, FormatAuthJS)
	newCodec := mustCodec(t, []string{"new-secret", "old-secret"}, testSalt, FormatAuthJS)

	oldToken := mustEncode(t, oldCodec, testClaims(), day, testNow)
	newToken := mustEncode(t, newCodec, testClaims(), day, testNow)

	if _, err := newCodec.Decode(oldToken, testNow); err != nil {
		t.Errorf("token of the old secret: %v", err)
	}
	if _, err := newCodec.Decode(newToken, testNow); err != nil {
		t.Errorf("token of the new secret: %v", err)
	}
	if _, err := oldCodec.Decode(newToken, testNow); err == nil {
		t.Error("the old secret alone decoded a token of the new secret")
	}
	if oldKid, newKid := header(t, oldToken)["kid"], header(t, newToken)["kid"]; oldKid == newKid {
		t.Errorf("kid %v is the same for both secrets; want the first secret to encrypt", newKid)
	}

	// Without a kid, or with one naming no key, every key is tried.
	payload := fmt.Sprintf(`{"sub":"user-1","exp":%d}`, testNow.Add(day).Unix())
	for _, kid := range []string{"", "unknown"} {
		token := rawToken(t, jose.DIRECT, oldCodec.keys[0].key, jose.A256CBC_HS512, kid, payload)
		if _, err := newCodec.Decode(token, testNow); err != nil {
			t.Errorf("kid %q: %v", kid, err)
		}
	}
	// A kid naming a key is final: no other key is tried.
	token := rawToken(t, jose.DIRECT, oldCodec.keys[0].key, jose.A256CBC_HS512, newCodec.keys[0].kid, payload)
	if _, err := newCodec.Decode(token, testNow); err == nil {
		t.Error("a token whose kid names another key decoded")
	}
}

func TestCodecRejects(t *testing.T) {
	c := mustCodec(t, []string{testSecret}, testSalt, FormatAuthJS)
	token := mustEncode(t, c, testClaims(), day, testNow)
	parts := strings.Split(token, ".")
	key := c.keys[0].key
	exp := testNow.Add(day).Unix()

	// flip changes the first character of part i, which carries 6 whole bits of its first byte
	// (the last character may carry only padding bits).
	flip := func(i int) string {
		p := append([]string(nil), parts...)
		if p[i] == "" {
			p[i] = "AAAA" // an encrypted key, which dir forbids
		} else if p[i][0] == 'A' {
			p[i] = "B" + p[i][1:]
		} else {
			p[i] = "A" + p[i][1:]
		}
		return strings.Join(p, ".")
	}

	tests := map[string]string{
		"empty":                  "",
		"garbage":                "not a token",
		"dots":                   "....",
		"three parts (a JWS)":    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
		"six parts":              token + ".AAAA",
		"four parts":             strings.Join(parts[:4], "."),
		"truncated":              token[:len(token)-10],
		"truncated ciphertext":   strings.Join([]string{parts[0], parts[1], parts[2], parts[3][:len(parts[3])/2], parts[4]}, "."),
		"bad base64":             strings.Join([]string{parts[0], parts[1], parts[2], parts[3] + "!", parts[4]}, "."),
		"JSON serialization":     `{"protected":"` + parts[0] + `","iv":"` + parts[2] + `","ciphertext":"` + parts[3] + `","tag":"` + parts[4] + `"}`,
		"tampered header":        flip(0),
		"tampered encrypted key": flip(1),
		"tampered iv":            flip(2),
		"tampered ciphertext":    flip(3),
		"tampered tag":           flip(4),
		"header swapped":         strings.Join(append([]string{strings.Split(rawToken(t, jose.DIRECT, key, jose.A256CBC_HS512, "", "{}"), ".")[0]}, parts[1:]...), "."),
		"wrong secret":           mustEncode(t, mustCodec(t, []string{"other-secret"}, testSalt, FormatAuthJS), testClaims(), day, testNow),
		"wrong salt":             mustEncode(t, mustCodec(t, []string{testSecret}, "__Secure-"+testSalt, FormatAuthJS), testClaims(), day, testNow),
		"NextAuth v4 token":      mustEncode(t, mustCodec(t, []string{testSecret}, testSalt, FormatNextAuthV4), testClaims(), day, testNow),
		// @auth/core's decode() accepts enc A256GCM with the first 32 bytes of the same HKDF
		// output (its 32-byte derivation); authgate accepts only the format's enc.
		"enc A256GCM":       rawToken(t, jose.DIRECT, key[:32], jose.A256GCM, "", fmt.Sprintf(`{"exp":%d}`, exp)),
		"enc A128CBC-HS256": rawToken(t, jose.DIRECT, key[:32], jose.A128CBC_HS256, "", fmt.Sprintf(`{"exp":%d}`, exp)),
		"alg A256KW":        rawToken(t, jose.A256KW, key[:32], jose.A256CBC_HS512, "", fmt.Sprintf(`{"exp":%d}`, exp)),
		"payload null":      rawToken(t, jose.DIRECT, key, jose.A256CBC_HS512, "", "null"),
		"payload array":     rawToken(t, jose.DIRECT, key, jose.A256CBC_HS512, "", "[1]"),
		"payload string":    rawToken(t, jose.DIRECT, key, jose.A256CBC_HS512, "", `"x"`),
		"payload not JSON":  rawToken(t, jose.DIRECT, key, jose.A256CBC_HS512, "", "{"),
		"no exp":            rawToken(t, jose.DIRECT, key, jose.A256CBC_HS512, "", `{"sub":"1"}`),
		"exp a string":      rawToken(t, jose.DIRECT, key, jose.A256CBC_HS512, "", `{"exp":"9999999999"}`),
		"nbf a string":      rawToken(t, jose.DIRECT, key, jose.A256CBC_HS512, "", fmt.Sprintf(`{"exp":%d,"nbf":"0"}`, exp)),
		"nbf in the future": rawToken(t, jose.DIRECT, key, jose.A256CBC_HS512, "", fmt.Sprintf(`{"exp":%d,"nbf":%d}`, exp, testNow.Unix()+60)),
		"iat in the future": mustEncode(t, c, testClaims(), day, testNow.Add(time.Minute)),
		"expired":           mustEncode(t, c, testClaims(), 30*day, testNow.Add(-31*day)),
		"expired 16 s ago":  mustEncode(t, c, testClaims(), time.Minute, testNow.Add(-time.Minute-16*time.Second)),
		"expired at leeway": mustEncode(t, c, testClaims(), time.Minute, testNow.Add(-time.Minute-15*time.Second)),
	}
	for name, token := range tests {
		t.Run(name, func(t *testing.T) {
			if claims, err := c.Decode(token, testNow); err == nil {
				t.Errorf("Decode(%q) = %v, want an error", token, claims)
			}
		})
	}
}

// TestCodecLeeway pins Auth.js's clockTolerance of 15 s, on both sides of each check.
func TestCodecLeeway(t *testing.T) {
	c := mustCodec(t, []string{testSecret}, testSalt, FormatAuthJS)
	key := c.keys[0].key
	now := testNow.Unix()
	for _, tc := range []struct {
		payload string
		ok      bool
	}{
		{fmt.Sprintf(`{"exp":%d}`, now-14), true},
		{fmt.Sprintf(`{"exp":%d}`, now-15), false},
		{fmt.Sprintf(`{"exp":%d.5}`, now+60), true}, // exp may be fractional
		{fmt.Sprintf(`{"exp":%d,"nbf":%d}`, now+60, now+15), true},
		{fmt.Sprintf(`{"exp":%d,"nbf":%d}`, now+60, now+16), false},
		{fmt.Sprintf(`{"exp":%d,"iat":%d}`, now+60, now+15), true},
		{fmt.Sprintf(`{"exp":%d,"iat":%d}`, now+60, now+16), false},
	} {
		_, err := c.Decode(rawToken(t, jose.DIRECT, key, jose.A256CBC_HS512, "", tc.payload), testNow)
		if (err == nil) != tc.ok {
			t.Errorf("payload %s at %d: err = %v, want ok %v", tc.payload, now, err, tc.ok)
		}
	}
}

func TestNewCodecErrors(t *testing.T) {
	for name, secrets := range map[string][]string{
		"nil":          nil,
		"empty list":   {},
		"empty secret": {""},
		"empty second": {"a", ""},
	} {
		if _, err := NewCodec(secrets, testSalt, FormatAuthJS); err == nil {
			t.Errorf("%s: NewCodec succeeded, want an error", name)
		}
	}
	if _, err := NewCodec([]string{"a"}, testSalt, Format(7)); err == nil {
		t.Error("unknown format: NewCodec succeeded, want an error")
	}
}

func FuzzDecode(f *testing.F) {
	c := mustCodec(f, []string{testSecret}, testSalt, FormatAuthJS)
	token := mustEncode(f, c, testClaims(), day, testNow)
	f.Add(token)
	f.Add(token[:len(token)/2])
	f.Add("")
	f.Add("....")
	f.Add("a.b.c.d.e")
	f.Add(rawToken(f, jose.DIRECT, c.keys[0].key, jose.A256CBC_HS512, "", "null"))
	f.Fuzz(func(t *testing.T, token string) {
		claims, err := c.Decode(token, testNow)
		if err == nil && claims == nil {
			t.Errorf("Decode(%q) returned no claims and no error", token)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	c := mustCodec(b, []string{testSecret}, testSalt, FormatAuthJS)
	claims := testClaims()
	for b.Loop() {
		if _, err := c.Encode(claims, 30*day, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	c := mustCodec(b, []string{testSecret}, testSalt, FormatAuthJS)
	token := mustEncode(b, c, testClaims(), 30*day, testNow)
	for b.Loop() {
		if _, err := c.Decode(token, testNow); err != nil {
			b.Fatal(err)
		}
	}
}
