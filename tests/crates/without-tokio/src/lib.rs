//! Empty: see tests/.
