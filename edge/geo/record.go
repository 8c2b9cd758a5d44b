package geo

import (
	"errors"

	"github.com/oschwald/maxminddb-golang/v2/mmdbdata"
)

// Bounds on the work one record may cost, so a hostile or corrupt file cannot
// make a lookup loop for long. Real records are far below them: a City record
// has about ten keys, names maps about ten languages, at most three
// subdivisions.
const (
	maxRecordKeys = 64
	maxNameKeys   = 64
	maxSubKeys    = 16
	maxISOLen     = 8
	maxNameLen    = 256
)

var errTooLarge = errors.New("record larger than geo accepts")

// record is the part of a GeoIP2 Country or City record that geo reports.
// It decodes itself from a cursor so that everything else (names in other
// languages, geoname ids, location, postal, traits) is skipped without being
// materialized.
type record struct {
	country    string // country.iso_code
	registered string // registered_country.iso_code, used when country is absent
	sub        string // subdivisions[0].iso_code
	city       string // city.names.en
}

var _ mmdbdata.CursorUnmarshaler = (*record)(nil)

// UnmarshalMaxMindDBCursor implements mmdbdata.CursorUnmarshaler.
func (r *record) UnmarshalMaxMindDBCursor(c mmdbdata.Cursor) (mmdbdata.Cursor, error) {
	m, err := c.MapReader()
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	if m.Len() > maxRecordKeys {
		return mmdbdata.Cursor{}, errTooLarge
	}
	next := m.First()
	for range m.Len() {
		key, val, err := next.ReadMapKey()
		if err != nil {
			return mmdbdata.Cursor{}, err
		}
		switch string(key) {
		case "country":
			r.country, next, err = readISOCode(val)
		case "registered_country":
			r.registered, next, err = readISOCode(val)
		case "subdivisions":
			r.sub, next, err = readFirstISOCode(val)
		case "city":
			r.city, next, err = readEnglishName(val)
		default:
			next, err = val.Skip()
		}
		if err != nil {
			return mmdbdata.Cursor{}, err
		}
	}
	return m.End(next)
}

// readISOCode reads the iso_code of a country or subdivision map at c and
// returns the cursor after the map. It stops scanning the map at iso_code:
// the successor comes from Skip, which costs nothing for the usual case of a
// pointer to a map shared by many records.
func readISOCode(c mmdbdata.Cursor) (string, mmdbdata.Cursor, error) {
	end, err := c.Skip()
	if err != nil {
		return "", mmdbdata.Cursor{}, err
	}
	iso, err := findString(c, "iso_code", maxSubKeys, maxISOLen)
	return iso, end, err
}

// readFirstISOCode reads subdivisions[0].iso_code from the slice at c: the
// first subdivision is the largest one, the ISO 3166-2 code.
func readFirstISOCode(c mmdbdata.Cursor) (string, mmdbdata.Cursor, error) {
	end, err := c.Skip()
	if err != nil {
		return "", mmdbdata.Cursor{}, err
	}
	s, err := c.Slice()
	if err != nil {
		return "", mmdbdata.Cursor{}, err
	}
	_, first, ok := s.Next(mmdbdata.Cursor{})
	if !ok {
		return "", end, s.Err()
	}
	iso, _, err := readISOCode(first)
	return iso, end, err
}

// readEnglishName reads city.names.en from the city map at c.
func readEnglishName(c mmdbdata.Cursor) (string, mmdbdata.Cursor, error) {
	end, err := c.Skip()
	if err != nil {
		return "", mmdbdata.Cursor{}, err
	}
	m, err := c.MapReader()
	if err != nil {
		return "", mmdbdata.Cursor{}, err
	}
	if m.Len() > maxSubKeys {
		return "", mmdbdata.Cursor{}, errTooLarge
	}
	next := m.First()
	for range m.Len() {
		key, val, err := next.ReadMapKey()
		if err != nil {
			return "", mmdbdata.Cursor{}, err
		}
		if string(key) == "names" {
			name, err := findString(val, "en", maxNameKeys, maxNameLen)
			return name, end, err
		}
		if next, err = val.Skip(); err != nil {
			return "", mmdbdata.Cursor{}, err
		}
	}
	return "", end, nil
}

// findString returns the string value of key in the map at c, or "" when the
// map has no such key.
func findString(c mmdbdata.Cursor, key string, maxKeys, maxLen uint64) (string, error) {
	m, err := c.MapReader()
	if err != nil {
		return "", err
	}
	if uint64(m.Len()) > maxKeys {
		return "", errTooLarge
	}
	next := m.First()
	for range m.Len() {
		k, val, err := next.ReadMapKey()
		if err != nil {
			return "", err
		}
		if string(k) == key {
			s, _, err := val.ReadStringMaxSize(maxLen)
			return s, err
		}
		if next, err = val.Skip(); err != nil {
			return "", err
		}
	}
	return "", nil
}
