#!/bin/sh
# Non-agent: a periodic monitor script — every second, the load, the disk and memory use and
# the process count, appended to a log.   sh monitor.sh WORKDIR [SECONDS]
cd "$1" || exit 1
end=$(( $(date +%s) + ${2:-120} ))
echo "ready $$"
while [ "$(date +%s)" -lt "$end" ]; do
	{ cat /proc/loadavg; df -P / | tail -n 1; grep MemAvailable /proc/meminfo; ls /proc | wc -l; } >> monitor.log
	sleep 1
done
