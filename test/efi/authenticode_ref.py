#!/usr/bin/env python3
"""Independent Authenticode digest for the cross-check in test/efi/crosscheck.test.ts:
python3-pefile reads the headers, hashlib hashes (the Authenticode spec's algorithm, written
separately from src/efi/pe.ts). Prints one JSON line per file:
{"file", "sha1", "sha256", "sha384", "sha512", "sections": [[name, vsize, rawsize, rawptr]], "checksum_offset"}."""
import hashlib, json, sys
import pefile

for path in sys.argv[1:]:
    data = open(path, 'rb').read()
    pe = pefile.PE(data=data, fast_load=True)
    csum = pe.OPTIONAL_HEADER.get_field_absolute_offset('CheckSum')
    n = pe.OPTIONAL_HEADER.NumberOfRvaAndSizes
    parts = []
    hdr_end = pe.OPTIONAL_HEADER.SizeOfHeaders
    cert_size = 0
    if n > 4:
        sec = pe.OPTIONAL_HEADER.DATA_DIRECTORY[4]
        entry = sec.get_file_offset()
        parts += [data[:csum], data[csum + 4:entry], data[entry + 8:hdr_end]]
        cert_size = sec.Size
    else:
        parts += [data[:csum], data[csum + 4:hdr_end]]
    total = hdr_end
    for s in sorted((s for s in pe.sections if s.SizeOfRawData), key=lambda s: s.PointerToRawData):
        parts.append(data[s.PointerToRawData:s.PointerToRawData + s.SizeOfRawData])
        total += s.SizeOfRawData
    if len(data) > total + cert_size:
        parts.append(data[total:len(data) - cert_size])
    out = {'file': path, 'checksum_offset': csum,
           'sections': [[s.Name.rstrip(b'\0').decode('latin1'), s.Misc_VirtualSize, s.SizeOfRawData, s.PointerToRawData] for s in pe.sections]}
    for alg in ('sha1', 'sha256', 'sha384', 'sha512'):
        h = hashlib.new(alg)
        for p in parts:
            h.update(p)
        out[alg] = h.hexdigest()
    print(json.dumps(out))
