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
func (c *Codec) DecodeToken(token string, now time.Time) (t Token, current bool, err error) {
	plaintext, keyIndex, buf, err := c.open(token, true)
	if err != nil {
		return Token{}, false, err
	}
	t.JSON = bytes.Clone(plaintext)
	releaseBuffer(buf)
	var times timeClaims
	if err := scanClaims(&t, &times); err != nil {
		return Token{}, false, err
	}
	if err := validate(&times, now); err != nil {
		return Token{}, false, fmt.Errorf("invalid session token: %w", err)
	}
	t.Exp, t.Iat, t.ExpiresAt = times.exp.unix(), times.iat.unix(), times.expiresAt.unix()
	return t, keyIndex == 0, nil
}

// timeClaims are the claims golang-jwt's Validator reads, as scanClaims found
// them. They implement jwt.Claims as jwt.MapClaims does on the map decodeClaims
// would make (a number is a date, 0 none; another value is ErrInvalidType),
// without the map: golang-jwt's Validator still makes every decision.
type timeClaims struct {
	exp, iat, nbf, expiresAt timeClaim
}

// timeClaim is one time claim: absent, a number (f) or another value.
type timeClaim struct {
	kind uint8
	f    float64
}

const (
	claimAbsent uint8 = iota
	claimNumber
	claimOther
)

// date is jwt.MapClaims's parseNumericDate for this claim.
func (c timeClaim) date(name string) (*jwt.NumericDate, error) {
	switch c.kind {
	case claimAbsent:
		return nil, nil
	case claimNumber:
		if c.f == 0 {
			return nil, nil
		}
		round, frac := math.Modf(c.f)
		return jwt.NewNumericDate(time.Unix(int64(round), int64(frac*1e9))), nil
	}
	return nil, fmt.Errorf("%w: %s is invalid", jwt.ErrInvalidType, name)
}

// unix is the claim's time (its integer part) when it is a number, else the zero time.
func (c timeClaim) unix() time.Time {
	if c.kind != claimNumber {
		return time.Time{}
	}
	return time.Unix(int64(c.f), 0)
}

func (tc *timeClaims) GetExpirationTime() (*jwt.NumericDate, error) { return tc.exp.date("exp") }
func (tc *timeClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return tc.iat.date("iat") }
func (tc *timeClaims) GetNotBefore() (*jwt.NumericDate, error)      { return tc.nbf.date("nbf") }
func (tc *timeClaims) GetIssuer() (string, error)                   { return "", nil }
func (tc *timeClaims) GetSubject() (string, error)                  { return "", nil }
func (tc *timeClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

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
// it has no escape: the caller only compares it with ASCII names, which a name
// with invalid UTF-8 (U+FFFD once decoded) never equals either way.
func memberName(raw jsontext.Value) string {
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') >= 0 {
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
	case "exp":
		return scanTime(&times.exp, d)
	case "iat":
		return scanTime(&times.iat, d)
	case "nbf":
		return scanTime(&times.nbf, d)
	case "expires_at":
		return scanTime(&times.expiresAt, d)
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
	*str = t.stringAt(raw)
	return nil
}

// stringAt is the string value raw, a slice of t.JSON (jsontext reads a
// bytes.Buffer in place): its bytes in t.JSON when it has no escape and is
// valid UTF-8, else a copy as jsontext unquotes it (invalid UTF-8 becomes
// U+FFFD).
func (t *Token) stringAt(raw jsontext.Value) string {
	inner := raw[1 : len(raw)-1]
	if len(inner) == 0 {
		return ""
	}
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) && within(inner, t.JSON) {
		return unsafe.String(&inner[0], len(inner))
	}
	s, _ := jsontext.AppendUnquote(nil, raw)
	return string(s)
}

// within reports whether b (not empty) lies inside buf.
func within(b, buf []byte) bool {
	if len(buf) == 0 {
		return false
	}
	p, start := uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&buf[0]))
	return p >= start && p+uintptr(len(b)) <= start+uintptr(len(buf))
}

// scanTime reads a time claim's value: a number as readJSON reads it (refused
// out of float64's range), anything else recorded as present but not a number.
func scanTime(c *timeClaim, d *jsontext.Decoder) error {
	*c = timeClaim{kind: claimOther}
	if d.PeekKind() == '0' {
		tok, err := d.ReadToken()
		if err != nil {
			return err
		}
		if c.f, err = readNumber(tok); err != nil {
			return err
		}
		c.kind = claimNumber
		return nil
	}
	return skipJSON(d)
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
