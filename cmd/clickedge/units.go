package main

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
)

// Duration is a time.Duration written in configuration as a Go duration
// string ("5s", "1h30m"). A bare number is refused, except 0: "heartbeat: 5"
// could mean seconds or nanoseconds, and guessing wrong is worse than asking.
type Duration time.Duration

// ParseDuration parses a configuration duration.
func ParseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (want a number with a unit, e.g. 5s, 100ms, 1h30m)", s)
	}
	return Duration(d), nil
}

// String formats d so that ParseDuration reads it back, without the
// trailing zero units time.Duration prints ("24h", not "24h0m0s").
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MarshalText implements encoding.TextMarshaler (used for YAML and JSON).
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (environment values).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// UnmarshalYAML accepts a duration string or the number 0.
func (d *Duration) UnmarshalYAML(unmarshal func(any) error) error {
	var v any
	if err := unmarshal(&v); err != nil {
		return err
	}
	switch v := v.(type) {
	case nil:
		return nil // null keeps the current value, like any other key
	case string:
		return d.UnmarshalText([]byte(v))
	case int64, uint64, int, float64:
		if fmt.Sprint(v) == "0" {
			*d = 0
			return nil
		}
		return fmt.Errorf("invalid duration %v: missing unit (e.g. %vs or %vms)", v, v, v)
	}
	return fmt.Errorf("invalid duration: expected a string like 5s, got %T", v)
}

// ByteSize is a size in bytes written in configuration as an integer or a
// number with a unit: decimal B, KB, MB, GB, TB (powers of 1000) or binary
// KiB, MiB, GiB, TiB (powers of 1024), case-insensitive, e.g. "8GiB",
// "500MB", "1.5GiB". Ambiguous single letters (K, M, G) are refused.
type ByteSize int64

var byteUnits = []struct {
	name string
	mult int64
}{
	// Ordered for String: binary first, largest first.
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
	{"B", 1},
}

// ParseByteSize parses a configuration size.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	if !validDecimal(num) {
		return 0, fmt.Errorf("invalid size %q (want bytes or a number with a unit, e.g. 32MiB, 500MB, 8GiB)", s)
	}
	mult := int64(-1)
	if unit == "" {
		mult = 1
	}
	for _, u := range byteUnits {
		if strings.EqualFold(unit, u.name) {
			mult = u.mult
		}
	}
	if mult < 0 {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", s, unit)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("invalid size %q: not a whole number of bytes", s)
	}
	n := r.Num()
	if !n.IsInt64() {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return ByteSize(n.Int64()), nil
}

// validDecimal reports whether s is digits with at most one inner dot.
func validDecimal(s string) bool {
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" || dot && frac == "" {
		return false
	}
	return !strings.Contains(frac, ".")
}

// String formats b with the largest unit that divides it exactly, so that
// ParseByteSize reads back the same value.
func (b ByteSize) String() string {
	if b <= 0 {
		return fmt.Sprint(int64(b))
	}
	for _, u := range byteUnits {
		if int64(b)%u.mult == 0 {
			return fmt.Sprintf("%d%s", int64(b)/u.mult, u.name)
		}
	}
	return fmt.Sprint(int64(b)) // unreachable: B divides everything
}

// MarshalText implements encoding.TextMarshaler (used for YAML and JSON).
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// MarshalYAML writes 0 as a number ("max_bytes: 0", not "max_bytes: "0"")
// and other sizes with their unit.
func (b ByteSize) MarshalYAML() (any, error) {
	if b == 0 {
		return 0, nil
	}
	return b.String(), nil
}

// UnmarshalText implements encoding.TextUnmarshaler (environment values).
func (b *ByteSize) UnmarshalText(t []byte) error {
	v, err := ParseByteSize(string(t))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// UnmarshalYAML accepts a non-negative integer or a size string.
func (b *ByteSize) UnmarshalYAML(unmarshal func(any) error) error {
	var v any
	if err := unmarshal(&v); err != nil {
		return err
	}
	switch v := v.(type) {
	case nil:
		return nil
	case string:
		return b.UnmarshalText([]byte(v))
	case uint64:
		if v > math.MaxInt64 {
			return fmt.Errorf("invalid size %d: too large", v)
		}
		*b = ByteSize(v)
		return nil
	case int64:
		if v < 0 {
			return fmt.Errorf("invalid size %d: must not be negative", v)
		}
		*b = ByteSize(v)
		return nil
	}
	return errors.New("invalid size: expected an integer or a string like 32MiB")
}
