// Package catalogtest generates large catalogs in the shape of a real
// network, for benchmarks of the catalog and of the edge (bench/).
package catalogtest

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
)

// LinkCode is the code of the i-th generated link: 7 or more base-36
// characters, like a short-link service's.
func LinkCode(i int) string {
	return strconv.FormatInt(int64(i)+2176782336, 36) // 36^6: at least 7 digits
}

// Write writes a catalog of n links in the shape a real network has: most
// links plain, one in five with parameters and a geo rule, one in ten
// paused with a fallback. Each link has its own advertiser host and path,
// so nothing is shared between templates. format is "yaml", the block
// style a person writes, or "json", the form a feed writes for a big
// catalog (JSON is YAML too; catalog.Parse reads it with a faster
// decoder). Both forms hold the same links.
func Write(w io.Writer, n int, format string) error {
	if format != "yaml" && format != "json" {
		return fmt.Errorf("catalogtest: format %q: want yaml or json", format)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if format == "json" {
		writeJSON(bw, n)
	} else {
		writeYAML(bw, n)
	}
	return bw.Flush()
}

func writeYAML(bw *bufio.Writer, n int) {
	bw.WriteString("links:\n")
	for i := range n {
		c := LinkCode(i)
		switch i % 10 {
		case 7, 8:
			fmt.Fprintf(bw, `  - code: %s
    url: "https://adv%d.example/lp/%d?cid={click_id}&sub={subid}&c={param:utm_campaign}"
    params: [subid, subid1, utm_campaign]
    rules:
      - name: de-mobile
        when: 'country == "DE" && device == "mobile"'
        url: "https://m.adv%d.example/de/%d?cid={click_id}&sub={subid}"
`, c, i%5000, i, i%5000, i)
		case 9:
			fmt.Fprintf(bw, `  - code: %s
    status: paused
    url: "https://adv%d.example/lp/%d?cid={click_id}"
    fallback_url: "https://adv%d.example/"
`, c, i%5000, i, i%5000)
		default:
			fmt.Fprintf(bw, `  - code: %s
    url: "https://adv%d.example/lp/%d?cid={click_id}&sub={subid}"
`, c, i%5000, i)
		}
	}
}

// writeJSON writes the same links as writeYAML, one per line.
func writeJSON(bw *bufio.Writer, n int) {
	bw.WriteString("{\"links\": [\n")
	for i := range n {
		c := LinkCode(i)
		if i > 0 {
			bw.WriteString(",\n")
		}
		switch i % 10 {
		case 7, 8:
			fmt.Fprintf(bw, `{"code": "%s", "url": "https://adv%d.example/lp/%d?cid={click_id}&sub={subid}&c={param:utm_campaign}", "params": ["subid", "subid1", "utm_campaign"], "rules": [{"name": "de-mobile", "when": "country == \"DE\" && device == \"mobile\"", "url": "https://m.adv%d.example/de/%d?cid={click_id}&sub={subid}"}]}`,
				c, i%5000, i, i%5000, i)
		case 9:
			fmt.Fprintf(bw, `{"code": "%s", "status": "paused", "url": "https://adv%d.example/lp/%d?cid={click_id}", "fallback_url": "https://adv%d.example/"}`,
				c, i%5000, i, i%5000)
		default:
			fmt.Fprintf(bw, `{"code": "%s", "url": "https://adv%d.example/lp/%d?cid={click_id}&sub={subid}"}`, c, i%5000, i)
		}
	}
	bw.WriteString("\n]}\n")
}
