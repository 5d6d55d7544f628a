package session

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/golang-jwt/jwt/v5"
)

// Token is a decoded and validated session token whose claims stay the JSON the
// token holds until they are asked for (Claims). A guard reads the few claims it
// needs on every request from Token's fields, without a map; a cache keeps one
// pointer-free buffer per token, which the garbage collector does not walk,
// instead of a map of interfaces, which it must.
type Token struct {
	// JSON is the token's claims as it holds them, a JSON object. It is a copy
	// of the plaintext, which nothing may modify: the string fields below may
	// share its bytes.
	JSON []byte

	// The claims of that name when they are JSON strings, else "". Mixed says
	// which of them are present with another type (null included).
	Sub, Email, Name, Sid, Jti, Error string
	Mixed                             StringClaims

	// Exp, Iat and ExpiresAt are those claims when they are numbers, as
	// time.Unix of their integer part, else the zero time. exp, iat and nbf have
	// been validated as Decode does.
	Exp, Iat, ExpiresAt time.Time
}

// StringClaims is a set of Token's string claims.
type StringClaims uint8

// The string claims Token reads.
const (
	ClaimSub StringClaims = 1 << iota
	ClaimEmail
	ClaimName
	ClaimSid
	ClaimJti
	ClaimError
)

// Claims decodes the token's claims into what Decode returns (map[string]any,
// numbers as float64). Each call makes a new map.
func (t *Token) Claims() (map[string]any, error) {
	return decodeClaims(t.JSON)
}

// DecodeToken is DecodeKey that leaves the claims undecoded: it checks the
// token exactly as DecodeKey does (the same tokens are accepted, the fuzz test
// holds it) and reads Token's fields in one pass over the JSON.
func (c *Codec) DecodeToken(token string, now time.Time) (t *Token, current bool, err error) {
	plaintext, keyIndex, buf, err := c.open(token, true)
	if err != nil {
		return nil, false, err
	}
	t = &Token{JSON: bytes.Clone(plaintext)}
	releaseBuffer(buf)
	var times timeClaims
	if err := scanClaims(t, &times); err != nil {
		return nil, false, err
	}
	if err := times.validate(now); err != nil {
		return nil, false, fmt.Errorf("invalid session token: %w", err)
	}
	t.Exp, t.Iat = unixTime(times.exp), unixTime(times.iat)
	if times.hasExpiresAt {
		t.ExpiresAt = unixTime(times.expiresAt)
	}
	return t, keyIndex == 0, nil
}

// timeClaims are the claims golang-jwt's Validator reads, as decodeClaims would
// have decoded them; nil with set: present but not a number.
type timeClaims struct {
	exp, iat, nbf          any
	hasExp, hasIat, hasNbf bool
	expiresAt              any
	hasExpiresAt           bool
}

// unixTime is a number claim's time (its integer part), else the zero time.
func unixTime(v any) time.Time {
	if f, ok := v.(float64); ok {
		return time.Unix(int64(f), 0)
	}
	return time.Time{}
}

// validate checks exp (required), nbf and iat at now as validate does the map:
// with golang-jwt's Validator, on a map of these claims alone.
func (tc *timeClaims) validate(now time.Time) error {
	pv := validators.Get().(*validator)
	defer validators.Put(pv)
	if pv.times == nil {
		pv.times = make(jwt.MapClaims, 3)
	}
	m := pv.times
	clear(m)
	if tc.hasExp {
		m["exp"] = tc.exp
	}
	if tc.hasIat {
		m["iat"] = tc.iat
	}
	if tc.hasNbf {
		m["nbf"] = tc.nbf
	}
	pv.now = now
	return pv.v.Validate(m)
}

// scanClaims reads t.JSON as decodeClaims would, refusing exactly what it
// refuses, and fills t's fields and times.
func scanClaims(t *Token, times *timeClaims) error {
	cd := claimsDecoders.Get().(*claimsDecoder)
	defer claimsDecoders.Put(cd)
	cd.in = *bytes.NewBuffer(t.JSON)
	cd.dec.Reset(&cd.in, claimsOptions)
	defer func() { // let go of t.JSON
		cd.in = bytes.Buffer{}
		cd.dec.Reset(&cd.in)
	}()
	d := &cd.dec
	if d.PeekKind() != '{' {
		return errClaims
	}
	if _, err := d.ReadToken(); err != nil {
		return errClaims
	}
	for d.PeekKind() != '}' {
		raw, err := d.ReadValue() // the member's name
		if err != nil {
			return errClaims
		}
		if err := scanMember(t, times, d, memberName(raw)); err != nil {
			return errClaims
		}
	}
	if _, err := d.ReadToken(); err != nil {
		return errClaims
	}
	if _, err := d.ReadToken(); err != io.EOF {
		return errClaims // a second value or trailing bytes
	}
	return nil
}

// memberName is a member's name from its raw JSON string, without a copy when
// it has no escape (the caller only compares it).
func memberName(raw jsontext.Value) string {
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') >= 0 || !utf8.Valid(inner) {
		return claimName(raw)
	}
	return unsafe.String(unsafe.SliceData(inner), len(inner))
}

// scanMember reads the value of the top-level member name.
func scanMember(t *Token, times *timeClaims, d *jsontext.Decoder, name string) error {
	var str *string
	var bit StringClaims
	switch name {
	case "sub":
		str, bit = &t.Sub, ClaimSub
	case "email":
		str, bit = &t.Email, ClaimEmail
	case "name":
		str, bit = &t.Name, ClaimName
	case "sid":
		str, bit = &t.Sid, ClaimSid
	case "jti":
		str, bit = &t.Jti, ClaimJti
	case "error":
		str, bit = &t.Error, ClaimError
	case "exp", "iat", "nbf", "expires_at":
		return scanTime(times, d, name)
	}
	if str == nil {
		return skipJSON(d)
	}
	if d.PeekKind() != '"' {
		t.Mixed |= bit
		return skipJSON(d)
	}
	raw, err := d.ReadValue()
	if err != nil {
		return err
	}
	*str = t.stringAt(raw, d.InputOffset())
	return nil
}

// stringAt is the string value raw, which ends at offset end of t.JSON: its
// bytes in t.JSON when it has no escape and is valid UTF-8, else a copy as
// jsontext unquotes it (invalid UTF-8 becomes U+FFFD).
func (t *Token) stringAt(raw jsontext.Value, end int64) string {
	inner := raw[1 : len(raw)-1]
	start := int(end) - len(raw) + 1
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) && start >= 0 && start+len(inner) <= len(t.JSON) &&
		bytes.Equal(t.JSON[start:start+len(inner)], inner) {
		if len(inner) == 0 {
			return ""
		}
		return unsafe.String(&t.JSON[start], len(inner))
	}
	s, _ := jsontext.AppendUnquote(nil, raw)
	return string(s)
}

// scanTime reads a time claim's value: a number as readJSON reads it (refused
// out of float64's range), anything else recorded as present but not a number.
func scanTime(times *timeClaims, d *jsontext.Decoder, name string) error {
	var v any
	isNumber := d.PeekKind() == '0'
	if isNumber {
		tok, err := d.ReadToken()
		if err != nil {
			return err
		}
		f, err := readNumber(tok)
		if err != nil {
			return err
		}
		v = f
	} else if err := skipJSON(d); err != nil {
		return err
	}
	switch name {
	case "exp":
		times.exp, times.hasExp = v, true
	case "iat":
		times.iat, times.hasIat = v, true
	case "nbf":
		times.nbf, times.hasNbf = v, true
	case "expires_at":
		times.expiresAt, times.hasExpiresAt = v, true
	}
	return nil
}

// readNumber is a number token's value, refused out of float64's range as
// encoding/json refuses it.
func readNumber(tok jsontext.Token) (float64, error) {
	f := tok.Float()
	if math.Abs(f) == math.MaxFloat64 { // Float clamps what overflows
		if _, err := strconv.ParseFloat(tok.String(), 64); err != nil {
			return 0, errClaims
		}
	}
	return f, nil
}

// skipJSON reads the decoder's next value, with readJSON's checks, keeping nothing.
func skipJSON(d *jsontext.Decoder) error {
	depth := 0
	for {
		tok, err := d.ReadToken()
		if err != nil {
			return err
		}
		switch tok.Kind() {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case '0':
			if _, err := readNumber(tok); err != nil {
				return err
			}
		}
		if depth == 0 {
			return nil
		}
	}
}
