-- Proof photos keep where and with what they were taken, as read from their EXIF by the server.
ALTER TABLE proof_photos
    ADD COLUMN location_lat NUMERIC(10,7)
        CONSTRAINT proof_photos_location_lat_check CHECK (location_lat BETWEEN -90 AND 90),
    ADD COLUMN location_lng NUMERIC(10,7)
        CONSTRAINT proof_photos_location_lng_check CHECK (location_lng BETWEEN -180 AND 180),
    ADD COLUMN camera_make VARCHAR(100),
    ADD COLUMN camera_model VARCHAR(100),
    ADD CONSTRAINT proof_photos_location_pair_check CHECK ((location_lat IS NULL) = (location_lng IS NULL));
