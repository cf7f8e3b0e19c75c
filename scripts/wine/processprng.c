/* bcryptprimitives.dll for Wine 8.0, which lacks it: exports the one function Rust's std imports
 * from it, ProcessPrng, filling the buffer from advapi32's RtlGenRandom (SystemFunction036).
 * Built by scripts/windows_under_wine.sh with mingw and copied into Wine's system32. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
