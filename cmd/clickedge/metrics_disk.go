package main

import (
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	diskAvail = desc("data_dir_available_bytes", "Bytes available to clickedge on data_dir's filesystem.")
	diskSize  = desc("data_dir_size_bytes", "Size of data_dir's filesystem.")
)

// diskCollector reports data_dir's filesystem at scrape time, so the disk
// alerts (deploy/prometheus) need no node exporter and watch the right
// mount whatever the host's layout.
type diskCollector struct{ dir string }

func (c *diskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- diskAvail
	ch <- diskSize
}

func (c *diskCollector) Collect(ch chan<- prometheus.Metric) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(c.dir, &st); err != nil {
		ch <- prometheus.NewInvalidMetric(diskAvail, err)
		return
	}
	gauge(ch, diskAvail, float64(st.Bavail)*float64(st.Bsize))
	gauge(ch, diskSize, float64(st.Blocks)*float64(st.Bsize))
}
