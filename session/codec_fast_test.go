package session

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// customToken encrypts payload under c's first key with any protected header
// (JSON text), as another writer might: the fast path must leave such tokens
// to go-jose unless the header is byte for byte the one Encode writes.
func customToken(t testing.TB, c *Codec, header, payload string) string {
	t.Helper()
	k := c.keys[0]
	h := base64.RawURLEncoding.EncodeToString([]byte(header))
	iv := make([]byte, k.aead.NonceSize())
	for i := range iv {
		iv[i] = byte(i * 7)
	}
	sealed := k.aead.Seal(nil, iv, []byte(payload), []byte(h))
	ct, tag := sealed[:len(sealed)-c.tagSize], sealed[len(sealed)-c.tagSize:]
	enc := base64.RawURLEncoding.EncodeToString
	return h + ".." + enc(iv) + "." + enc(ct) + "." + enc(tag)
}

// The header Encode writes is the one the fast path looks for, for every key
// and format, and so is @auth/core's: their tokens skip go-jose's parse.
func TestCodecFastPathTaken(t *testing.T) {
	for _, format := range []Format{FormatAuthJS, FormatNextAuthV4} {
		c := mustCodec(t, []string{testSecret, "older-secret"}, testSalt, format)
		old := mustCodec(t, []string{"older-secret"}, testSalt, format)
		for i, token := range []string{mustEncode(t, c, testClaims(), day, testNow), mustEncode(t, old, testClaims(), day, testNow)} {
			plaintext, keyIndex, pooled, err := c.openFast(token)
			if err != nil {
				t.Fatalf("format %d, token of key %d: openFast: %v", format, i, err)
			}
			releaseBuffer(pooled)
			if keyIndex != i || len(plaintext) == 0 {
				t.Errorf("format %d: token of key %d opened by key %d", format, i, keyIndex)
			}
		}
	}
	// @auth/core 0.41.3's token (TestCodecKnownAnswers).
	c := mustCodec(t, []string{testSecret}, "authjs.session-token", FormatAuthJS)
	authjs := "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIiwia2lkIjoidzlOVTBMU2plXzdRc1RhV1JsWEJodGY2TVBteFV5QjNMdDFteE1YRklrU2V0bHdwY3YydUpCbmJQcS05NXJIZ2Roek5kRllHVzVJeTNINzJnalpwbFEifQ..QjZ6jU2fOfApFv8Xj-m36w.vkJPIy4joiNvgKKJ-AOll7ISlf7_M4tbDJnjlPpkjXn5RdIY8bH029gVPXQID8FdqHTaelAtDiBFT0nvCKJqVwjVrcs8vtUm3FyJP7__4Mx6wthe17Rtmyh1w95x0B6Z-kHF_Bkja6QA_Kc67ETe-n4IQWOi7AkG_w6NdBusFfseeCZfZZBJ3VloV2DOYtk4.AhDSgx65N8o7z2qbdDA_j3j_kmSoigVuVlmfYuT8VIc"
	if _, _, pooled, err := c.openFast(authjs); err != nil {
		t.Errorf("@auth/core's token: openFast: %v", err)
	} else {
		releaseBuffer(pooled)
	}
}

// Headers the fast path does not write still decode through go-jose when
// go-jose accepts them (no kid, other order, spaces, escapes, extra members),
// and a header that cannot name alg dir and the format's enc is refused early.
func TestCodecOtherHeaders(t *testing.T) {
	c := mustCodec(t, []string{testSecret}, testSalt, FormatAuthJS)
	payload := fmt.Sprintf(`{"sub":"user-1","exp":%d}`, testNow.Add(day).Unix())
	kid := c.keys[0].kid
	for header, ok := range map[string]bool{
		`{"alg":"dir","enc":"A256CBC-HS512"}`:                              true,
		`{"enc":"A256CBC-HS512","alg":"dir","kid":"` + kid + `"}`:          true,
		`{ "alg": "dir", "enc": "A256CBC-HS512" }`:                         true,
		`{"alg":"\u0064ir","enc":"A256CBC-HS512"}`:                         true,
		`{"alg":"dir","enc":"A256CBC\u002dHS512","typ":"JWT","cty":"JWT"}`: true,
		`{"alg":"dir","enc":"A256CBC-HS512","kid":"unknown"}`:              true,
		`{"alg":"dir","enc":"A256GCM"}`:                                    false,
		`{"alg":"A256KW","enc":"A256CBC-HS512"}`:                           false,
		`{"alg":"none"}`:                                                   false,
		`{"enc":"A256CBC-HS512"}`:                                          false,
		`{"alg":"dir","enc":"A256CBC-HS512","crit":["exp"],"exp":1}`:       false,
		`{"alg":"dir","enc":"A256CBC-HS512","zip":"DEF"}`:                  false, // not deflated
		`[]`: false,
		`{`:  false,
	} {
		token := customToken(t, c, header, payload)
		_, _, pooled, err := c.openFast(token)
		if err != errNotFast {
			t.Errorf("header %s: openFast = %v, want errNotFast", header, err)
			releaseBuffer(pooled)
		}
		for _, fast := range []bool{true, false} {
			if _, _, err := c.decodeKey(token, testNow, fast); (err == nil) != ok {
				t.Errorf("header %s (fast %v): err = %v, want ok %v", header, fast, err, ok)
			}
		}
	}
}

// The claims do not share memory with the pooled buffer they were decoded from.
func TestCodecClaimsOutliveBuffer(t *testing.T) {
	c := mustCodec(t, []string{testSecret}, testSalt, FormatAuthJS)
	claims, err := c.Decode(mustEncode(t, c, testClaims(), day, testNow), testNow)
	if err != nil {
		t.Fatal(err)
	}
	for range 4 { // reuse the pooled buffers
		if _, err := c.Decode(mustEncode(t, c, map[string]any{"name": strings.Repeat("x", 40), "email": strings.Repeat("y", 40)}, day, testNow), testNow); err != nil {
			t.Fatal(err)
		}
	}
	if claims["name"] != "Ada Lovelace" || claims["email"] != "ada@example.com" {
		t.Errorf("claims changed after the buffer was reused: %v", claims)
	}
}

// fuzzCodecs are the codecs FuzzDecodeFastMatchesJOSE decodes with: both
// formats, two secrets each (the second one rotated out).
func fuzzCodecs(t testing.TB) []*Codec {
	return []*Codec{
		mustCodec(t, []string{testSecret, "older-secret"}, testSalt, FormatAuthJS),
		mustCodec(t, []string{testSecret, "older-secret"}, testSalt, FormatNextAuthV4),
	}
}

// FuzzDecodeFastMatchesJOSE: the fast path and go-jose's full parse accept and
// refuse the same tokens, with the same claims and the same key.
func FuzzDecodeFastMatchesJOSE(f *testing.F) {
	codecs := fuzzCodecs(f)
	payload := fmt.Sprintf(`{"sub":"user-1","exp":%d,"iat":%d}`, testNow.Add(day).Unix(), testNow.Unix())
	for _, c := range codecs {
		old := &Codec{enc: c.enc, keys: c.keys[1:], tagSize: c.tagSize, quotedEnc: c.quotedEnc}
		old.encrypter, _ = jose.NewEncrypter(c.enc, jose.Recipient{Algorithm: jose.DIRECT, Key: old.keys[0].key, KeyID: old.keys[0].kid}, nil)
		for _, token := range []string{
			mustEncode(f, c, testClaims(), day, testNow),
			mustEncode(f, old, testClaims(), day, testNow),
			mustEncode(f, c, testClaims(), day, testNow.Add(-2*day)), // expired
			customToken(f, c, `{"alg":"dir","enc":"`+string(c.enc)+`"}`, payload),
			customToken(f, c, `{"enc":"`+string(c.enc)+`","alg":"dir"}`, payload),
			customToken(f, c, `{"alg":"dir","enc":"`+string(c.enc)+`"}`, `[]`),
			customToken(f, c, `{"alg":"dir","enc":"`+string(c.enc)+`"}`, `{"exp":1e400}`),
			customToken(f, c, `{"alg":"dir","enc":"`+string(c.enc)+`"}`, `{"exp":9999999999,"a":1,"a":2}`),
			customToken(f, c, `{"alg":"dir","enc":"`+string(c.enc)+`"}`, "{\"exp\":9999999999,\"n\":\"\xff\"}"),
		} {
			f.Add(token)
			parts := strings.Split(token, ".")
			f.Add(strings.Join([]string{parts[0], parts[1], parts[2], parts[3], parts[4][:len(parts[4])-2] + "AA"}, "."))
			f.Add(strings.Join([]string{parts[0], parts[1], parts[2], parts[3][:len(parts[3])-3], parts[3][len(parts[3])-3:] + parts[4]}, "."))
			f.Add(strings.Join([]string{parts[0], parts[1], parts[2][1:], parts[3], parts[4]}, "."))
			f.Add(parts[0] + "..")
		}
	}
	f.Add("")
	f.Add("....")
	f.Fuzz(func(t *testing.T, token string) {
		for _, c := range codecs {
			fastClaims, fastCurrent, fastErr := c.decodeKey(token, testNow, true)
			joseClaims, joseCurrent, joseErr := c.decodeKey(token, testNow, false)
			if (fastErr == nil) != (joseErr == nil) {
				t.Fatalf("enc %s, token %q: fast path err = %v, go-jose err = %v", c.enc, token, fastErr, joseErr)
			}
			if !reflect.DeepEqual(fastClaims, joseClaims) || fastCurrent != joseCurrent {
				t.Fatalf("enc %s, token %q: fast path = %v (current %v), go-jose = %v (current %v)", c.enc, token, fastClaims, fastCurrent, joseClaims, joseCurrent)
			}
		}
	})
}

// FuzzClaimsDecoder: the claims decoder accepts nothing that encoding/json
// (the decoder before it) refuses, and decodes it to the same values.
func FuzzClaimsDecoder(f *testing.F) {
	for _, s := range []string{
		`{"sub":"1","exp":1.5,"org":{"roles":["a",null,true]},"n":-0}`,
		`{"a":1,"a":2}`, "{\"s\":\"\xff\xfe\"}", `{"s":"\ud800"}`, `{"e":1e400}`, ` {"x":"\u00e9"} `,
		`{"deep":[[[[[[[[[[[]]]]]]]]]]]}`, `null`, `[]`, `{}`, `{"x":1}x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, plaintext []byte) {
		got, err := decodeClaims(plaintext)
		if err != nil {
			return
		}
		var want map[string]any
		if err := json.Unmarshal(plaintext, &want); err != nil {
			t.Fatalf("%q: decodeClaims accepted what encoding/json refuses (%v)", plaintext, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: decodeClaims = %v, encoding/json = %v", plaintext, got, want)
		}
	})
}

// BenchmarkDecodeJOSE is BenchmarkDecode through go-jose's full parse, as every
// token was decoded before the fast path.
func BenchmarkDecodeJOSE(b *testing.B) {
	c := mustCodec(b, []string{testSecret}, testSalt, FormatAuthJS)
	token := mustEncode(b, c, testClaims(), 30*day, testNow)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.decodeKey(token, testNow, false); err != nil {
			b.Fatal(err)
		}
	}
}
