//! The vocabulary as PostgreSQL text columns (feature `sqlx`, for the service only).
//!
//! A stage, an error code or a device class is stored as its wire spelling in a `TEXT`
//! column, and read back into the enum: a row can only hold what [`Stage`], [`ErrorCode`]
//! and [`DeviceClass`] spell, and a query that binds or reads one names the type, not a
//! string.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

use crate::{DeviceClass, ErrorCode, Stage};

/// `Type`, `Encode` and `Decode` for an enum with `as_str` and `FromStr`, as `TEXT`.
macro_rules! text_column {
    ($($ty:ty),+) => {$(
        impl Type<Postgres> for $ty {
            fn type_info() -> PgTypeInfo {
                <str as Type<Postgres>>::type_info()
            }

            fn compatible(ty: &PgTypeInfo) -> bool {
                <str as Type<Postgres>>::compatible(ty)
            }
        }

        impl Encode<'_, Postgres> for $ty {
            fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <&str as Encode<Postgres>>::encode(self.as_str(), buf)
            }
        }

        impl PgHasArrayType for $ty {
            fn array_type_info() -> PgTypeInfo {
                <&str as PgHasArrayType>::array_type_info()
            }

            fn array_compatible(ty: &PgTypeInfo) -> bool {
                <&str as PgHasArrayType>::array_compatible(ty)
            }
        }

        impl<'r> Decode<'r, Postgres> for $ty {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <&str as Decode<Postgres>>::decode(value)?;
                Ok(text.parse::<$ty>()?)
            }
        }
    )+};
}

text_column!(Stage, ErrorCode, DeviceClass);
