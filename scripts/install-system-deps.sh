#!/usr/bin/env bash
# Debian packages the tests and benchmarks use: dcmtk (independent DICOM oracle), Orthanc (reference
# DICOMweb server and performance peer), Chromium and its WebDriver (the console's browser tests). Installs only what is missing; needs root or sudo for apt-get.
set -euo pipefail
missing=()
command -v dcm2json >/dev/null 2>&1 || missing+=(dcmtk)
command -v Orthanc >/dev/null 2>&1 || missing+=(orthanc)
dpkg -s orthanc-dicomweb >/dev/null 2>&1 || missing+=(orthanc-dicomweb)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
