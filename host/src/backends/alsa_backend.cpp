// The ALSA backend: arrives with the host issue.
