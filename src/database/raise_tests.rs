use pgrx::prelude::PgSqlErrorCode as C;

use super::code;
use crate::error::Error;

#[test]
fn each_documented_sqlstate_is_postgres_own_code() {
    let m = || String::from("m");
    for (e, want) in [
        (
            Error::InvalidParameter(m()),
            C::ERRCODE_INVALID_PARAMETER_VALUE,
        ),
        (
            Error::InvalidJson(m()),
            C::ERRCODE_INVALID_TEXT_REPRESENTATION,
        ),
        (Error::Privilege(m()), C::ERRCODE_INSUFFICIENT_PRIVILEGE),
        (
            Error::NotConfigured(m()),
            C::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        ),
        (Error::Retry(m()), C::ERRCODE_T_R_SERIALIZATION_FAILURE),
        (
            Error::OverBudget(m()),
            C::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
        ),
        (
            Error::InTransactionBlock(m()),
            C::ERRCODE_ACTIVE_SQL_TRANSACTION,
        ),
        (Error::Duplicate(m()), C::ERRCODE_UNIQUE_VIOLATION),
        (Error::Plaid(m()), C::ERRCODE_SYSTEM_ERROR),
    ] {
        assert_eq!(code(e.sqlstate()), want, "{}", e.sqlstate());
        assert_eq!(e.to_string(), "m");
    }
}
