//! The room entity: the business object at the centre of the rooms service.
//!
//! It owns the shape of a room and nothing else; it must not know about storage, use cases or HTTP,
//! so every other layer may depend on it and it depends on none of them.

use serde::Serialize;

/// A room offered for rent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Room {
    /// Stable identifier in UUID form.
    pub code: String,
    /// Floor area in square metres.
    pub size: u32,
    /// Price per night in whole euros.
    pub price: u32,
    /// Latitude of the room in decimal degrees.
    pub latitude: f64,
    /// Longitude of the room in decimal degrees.
    pub longitude: f64,
    /// Whether the room can be booked right now.
    pub available: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_the_public_field_names() {
        let room = Room {
            code: "f853578c-fc0f-4e65-81b8-566c5dffa35a".into(),
            size: 215,
            price: 39,
            latitude: 51.75436293,
            longitude: -0.09998975,
            available: true,
        };
        let json = serde_json::to_value(&room).expect("a Room always serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "code": "f853578c-fc0f-4e65-81b8-566c5dffa35a",
                "size": 215,
                "price": 39,
                "latitude": 51.75436293,
                "longitude": -0.09998975,
                "available": true,
            })
        );
    }
}
