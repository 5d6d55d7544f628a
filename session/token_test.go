package session

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// checkToken holds a Token to the map DecodeKey returns for the same token:
// the same claims, and each field what the map says.
func checkToken(t *testing.T, tok *Token, want map[string]any) {
	t.Helper()
	got, err := tok.Claims()
	if err != nil {
		t.Fatalf("Claims: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Claims = %v, want %v", got, want)
	}
	for _, f := range []struct {
		name string
		bit  StringClaims
		got  string
	}{
		{"sub", ClaimSub, tok.Sub}, {"email", ClaimEmail, tok.Email}, {"name", ClaimName, tok.Name},
		{"sid", ClaimSid, tok.Sid}, {"jti", ClaimJti, tok.Jti}, {"error", ClaimError, tok.Error},
	} {
		v, present := want[f.name]
		s, isString := v.(string)
		if f.got != s {
			t.Fatalf("%s = %q, the map has %#v", f.name, f.got, v)
		}
		if mixed := tok.Mixed&f.bit != 0; mixed != (present && !isString) {
			t.Fatalf("%s: Mixed = %v, the map has %#v", f.name, mixed, v)
		}
	}
	for _, f := range []struct {
		name string
		got  time.Time
	}{{"exp", tok.Exp}, {"iat", tok.Iat}, {"expires_at", tok.ExpiresAt}} {
		var wantTime time.Time
		if n, ok := want[f.name].(float64); ok {
			wantTime = time.Unix(int64(n), 0)
		}
		if !f.got.Equal(wantTime) {
			t.Fatalf("%s = %v, the map has %#v", f.name, f.got, want[f.name])
		}
	}
}

func TestDecodeTokenFields(t *testing.T) {
	c := mustCodec(t, []string{testSecret}, testSalt, FormatAuthJS)
	exp := testNow.Add(day).Unix()
	for _, payload := range []string{
		fmt.Sprintf(`{"sub":"user-1","email":"a@example.com","name":"Ada","sid":"s1","jti":"j1","exp":%d,"iat":%d,"expires_at":%d}`, exp, testNow.Unix(), exp),
		fmt.Sprintf(`{"sub":"us\u00e9r","name":"\ud800x","email":null,"sid":7,"exp":%d.75,"org":{"sub":"nested","exp":"x"},"error":"RefreshAccessTokenError"}`, exp),
		fmt.Sprintf("{\"name\":\"\xff\",\"exp\":%d,\"expires_at\":\"soon\",\"jti\":\"\"}", exp),
		fmt.Sprintf(`{"\u0073ub":"escaped-name","exp":%d,"a":[1,[2,{"b":null}]]}`, exp),
	} {
		tok := customToken(t, c, `{"alg":"dir","enc":"A256CBC-HS512","kid":"`+c.keys[0].kid+`"}`, payload)
		want, _, err := c.DecodeKey(tok, testNow)
		if err != nil {
			t.Fatalf("%s: DecodeKey: %v", payload, err)
		}
		got, current, err := c.DecodeToken(tok, testNow)
		if err != nil || !current {
			t.Fatalf("%s: DecodeToken: current %v, %v", payload, current, err)
		}
		checkToken(t, &got, want)
	}
}

// TestDecodeTokenSharesJSON: a plain string claim is a view of Token.JSON, not
// an allocation of its own.
func TestDecodeTokenSharesJSON(t *testing.T) {
	c := mustCodec(t, []string{testSecret}, testSalt, FormatAuthJS)
	tok, _, err := c.DecodeToken(mustEncode(t, c, testClaims(), day, testNow), testNow)
	if err != nil {
		t.Fatal(err)
	}
	start, end := uintptr(unsafe.Pointer(&tok.JSON[0])), uintptr(unsafe.Pointer(&tok.JSON[len(tok.JSON)-1]))
	for _, s := range []string{tok.Sub, tok.Email, tok.Name, tok.Jti} {
		if p := uintptr(unsafe.Pointer(unsafe.StringData(s))); s == "" || p < start || p > end {
			t.Fatalf("%q is not in the token's JSON", s)
		}
	}
	if tok.Sub != "user-1" || tok.Email != "ada@example.com" || tok.Name != "Ada Lovelace" || tok.Jti == "" {
		t.Fatalf("fields = %+v", tok)
	}
}

func TestDecodeTokenRefuses(t *testing.T) {
	c := mustCodec(t, []string{testSecret}, testSalt, FormatAuthJS)
	h := `{"alg":"dir","enc":"A256CBC-HS512","kid":"` + c.keys[0].kid + `"}`
	exp := testNow.Add(day).Unix()
	for _, payload := range []string{
		`[]`, `{"sub":"x"}`, // no exp
		fmt.Sprintf(`{"exp":%d,"a":1,"a":2}`, exp),
		fmt.Sprintf(`{"exp":%d,"n":1e400}`, exp),
		fmt.Sprintf(`{"exp":%d,"o":{"n":[-1e999]}}`, exp),
		fmt.Sprintf(`{"exp":%d}x`, exp),
		fmt.Sprintf(`{"exp":%d,"iat":"now"}`, exp),
		fmt.Sprintf(`{"exp":%d,"nbf":null}`, exp),
		fmt.Sprintf(`{"exp":%d,"nbf":%d}`, exp, exp),
		fmt.Sprintf(`{"exp":%d}`, testNow.Add(-time.Minute).Unix()),
		`{"exp":"tomorrow"}`, `{"exp":0}`,
	} {
		tok := customToken(t, c, h, payload)
		_, _, wantErr := c.DecodeKey(tok, testNow)
		if _, _, err := c.DecodeToken(tok, testNow); err == nil || wantErr == nil {
			t.Fatalf("%s: DecodeToken err = %v, DecodeKey err = %v: both must refuse", payload, err, wantErr)
		}
	}
}

// FuzzDecodeTokenMatchesDecode: DecodeToken accepts exactly the tokens DecodeKey
// accepts (claims and times validated alike), and its fields are the map's.
func FuzzDecodeTokenMatchesDecode(f *testing.F) {
	codecs := fuzzCodecs(f)
	exp, iat := testNow.Add(day).Unix(), testNow.Unix()
	for _, p := range []string{
		fmt.Sprintf(`{"sub":"user-1","exp":%d,"iat":%d}`, exp, iat),
		fmt.Sprintf(`{"sub":1,"email":"e","name":["n"],"sid":"s","jti":"j","error":null,"exp":%d,"nbf":%d,"expires_at":%d}`, exp, iat, exp),
		fmt.Sprintf(`{"exp":%d,"iat":%d,"x":{"exp":1e400}}`, exp, exp+3600),
		fmt.Sprintf("{\"n\\u0061me\":\"a\\nb\",\"exp\":%d,\"s\":\"\xff\"}", exp),
		`{"exp":1e400}`, `{"exp":null}`, `{}`, `null`, `{"exp":9999999999,"a":1,"a":2}`,
	} {
		f.Add(p, false)
		f.Add(p, true)
	}
	f.Fuzz(func(t *testing.T, payload string, v4 bool) {
		c := codecs[0]
		h := `{"alg":"dir","enc":"A256CBC-HS512","kid":"` + c.keys[0].kid + `"}`
		if v4 {
			c, h = codecs[1], `{"alg":"dir","enc":"A256GCM"}`
		}
		tok := customToken(t, c, h, payload)
		want, wantCurrent, wantErr := c.DecodeKey(tok, testNow)
		got, current, err := c.DecodeToken(tok, testNow)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%q: DecodeToken err = %v, DecodeKey err = %v", payload, err, wantErr)
		}
		if err != nil {
			return
		}
		if current != wantCurrent {
			t.Fatalf("%q: current %v, want %v", payload, current, wantCurrent)
		}
		checkToken(t, &got, want)
		if !strings.HasPrefix(strings.TrimLeft(string(got.JSON), " \t\r\n"), "{") {
			t.Fatalf("%q: JSON is not the object", payload)
		}
	})
}

func BenchmarkDecodeToken(b *testing.B) {
	c := mustCodec(b, []string{testSecret}, testSalt, FormatAuthJS)
	token := mustEncode(b, c, testClaims(), 30*day, testNow)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.DecodeToken(token, testNow); err != nil {
			b.Fatal(err)
		}
	}
}
