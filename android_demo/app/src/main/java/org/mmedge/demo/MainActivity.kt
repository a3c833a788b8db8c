package org.mmedge.demo

import android.graphics.Bitmap
import android.graphics.ImageDecoder
import android.net.Uri
import android.os.Bundle
import android.widget.Button
import android.widget.EditText
import android.widget.ImageView
import android.widget.TextView
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import java.io.File
import kotlin.concurrent.thread

/**
 * Pick a photo, type a prompt, watch the answer stream in. The bundle is the folder pushed with
 * `adb push BUNDLE /sdcard/Android/data/org.mmedge.demo/files/bundle` (see ../README.md).
 */
class MainActivity : AppCompatActivity() {
    private var bridge: MmedgeBridge? = null
    private var photo: Bitmap? = null
    @Volatile private var generating = false

    private val picker = registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri: Uri? ->
        if (uri != null) {
            // Software bitmap in ARGB_8888: its pixels are readable (a hardware bitmap's are not).
            val source = ImageDecoder.createSource(contentResolver, uri)
            photo = ImageDecoder.decodeBitmap(source) { decoder, _, _ ->
                decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE
            }.copy(Bitmap.Config.ARGB_8888, false)
            findViewById<ImageView>(R.id.photo).setImageBitmap(photo)
        }
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        val answer = findViewById<TextView>(R.id.answer)
        val bundleDir = File(getExternalFilesDir(null), "bundle")
        thread {
            try {
                bridge = MmedgeBridge(bundleDir.path, 0, 4096)
                runOnUiThread { answer.text = "Bundle ready: ${bundleDir.path}" }
            } catch (e: MmedgeBridge.MmedgeException) {
                runOnUiThread { answer.text = "Cannot open ${bundleDir.path}:\n${e.message}" }
            }
        }
        findViewById<Button>(R.id.pick).setOnClickListener {
            picker.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly))
        }
        findViewById<Button>(R.id.ask).setOnClickListener {
            val b = bridge ?: return@setOnClickListener
            val image = photo ?: return@setOnClickListener
            if (generating) return@setOnClickListener
            generating = true
            answer.text = ""
            val prompt = findViewById<EditText>(R.id.prompt).text.toString()
            thread {
                try {
                    b.generate(arrayOf(rgbBytes(image)), intArrayOf(image.width), intArrayOf(image.height), prompt,
                        256, 0f, 0L) { _, piece ->
                        runOnUiThread { answer.append(piece) }
                        true
                    }
                } catch (e: MmedgeBridge.MmedgeException) {
                    runOnUiThread { answer.append("\n${e.message}") }
                } finally {
                    generating = false
                }
            }
        }
    }

    override fun onDestroy() {
        bridge?.close()
        super.onDestroy()
    }

    /** ARGB_8888 pixels -> packed RGB bytes, as the C ABI takes them (alpha dropped). */
    private fun rgbBytes(bitmap: Bitmap): ByteArray {
        val pixels = IntArray(bitmap.width * bitmap.height)
        bitmap.getPixels(pixels, 0, bitmap.width, 0, 0, bitmap.width, bitmap.height)
        val out = ByteArray(pixels.size * 3)
        for (i in pixels.indices) {
            val p = pixels[i]
            out[3 * i] = (p shr 16 and 0xFF).toByte()
            out[3 * i + 1] = (p shr 8 and 0xFF).toByte()
            out[3 * i + 2] = (p and 0xFF).toByte()
        }
        return out
    }
}
